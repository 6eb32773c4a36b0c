"""The Bot API wire format: envelope, tokens, chats, keyboards, documents, edits."""

import http.client
import json

import pytest
import requests

from .conftest import OTHER_TOKEN, TOKEN, Bot


def error_of(response):
    body = response.json()
    assert body["ok"] is False
    assert response.status_code == body["error_code"]
    assert response.headers["Content-Type"].startswith("application/json")
    return body


# -- envelope and tokens -----------------------------------------------------------


def test_success_is_ok_true_with_a_result_and_json_content_type(bot):
    response = bot.call("getMe")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        "ok": True,
        "result": {
            "id": 123456,
            "is_bot": True,
            "first_name": "CMMS Sandbox Bot",
            "username": "cmms_sandbox_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        },
    }


def test_get_me_uses_the_configured_username(sandbox, bot):
    sandbox.configure(bot_username="planta_norte_bot")
    assert bot.call("getMe").json()["result"]["username"] == "planta_norte_bot"


def test_unknown_method_is_404_method_not_found(bot):
    body = error_of(bot.call("sendTelepathy"))
    assert body == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}


def test_method_names_are_case_insensitive_like_telegram(bot):
    assert bot.call("getme").json()["ok"] is True


@pytest.mark.parametrize("token", ["123456", "abc:defghijklmnop", "123456:short", "123456:has spaces in it"])
def test_malformed_token_is_401_unauthorized(sandbox, token):
    body = error_of(Bot(sandbox, token).call("getMe"))
    assert body == {"ok": False, "error_code": 401, "description": "Unauthorized"}


def test_revoked_token_is_401_and_delivers_nothing_while_other_tokens_work(sandbox, bot):
    sandbox.configure(revoked_tokens=[TOKEN])
    assert error_of(bot.send(42))["error_code"] == 401
    assert Bot(sandbox, OTHER_TOKEN).send(42).status_code == 200
    assert [m["token_bot_id"] for m in sandbox.messages()] == [654321]


def test_config_never_shows_a_revoked_token_in_full(sandbox, control):
    sandbox.configure(revoked_tokens=[TOKEN])
    assert TOKEN not in control("get", "config").text
    assert sandbox.get_config()["revoked_tokens"] == ["bot123456:***"]


# -- sendMessage parameters --------------------------------------------------------


def test_send_message_returns_a_telegram_message_and_records_it(sandbox, bot):
    markup = {"inline_keyboard": [[{"text": "✅ Aceptar", "callback_data": "accept_wo_12345"}]]}
    result = bot.send(42, "<b>OT-12345</b> asignada", parse_mode="HTML", reply_markup=markup).json()["result"]
    assert result["message_id"] == 1
    assert result["chat"] == {"id": 42, "first_name": "User 42", "type": "private"}
    assert result["from"]["id"] == 123456 and result["from"]["is_bot"] is True
    assert result["text"] == "OT-12345 asignada"
    assert result["entities"] == [{"type": "bold", "offset": 0, "length": 8}]
    assert result["reply_markup"] == markup
    (record,) = sandbox.messages(chat_id=42)
    assert record["raw_text"] == "<b>OT-12345</b> asignada"
    assert record["text"] == "OT-12345 asignada"
    assert record["parse_mode"] == "HTML"
    assert record["method"] == "sendMessage"
    assert record["token_bot_id"] == 123456
    assert record["edited"] is False
    assert abs(record["received_at"] - result["date"]) < 2


def test_form_encoded_params_with_reply_markup_as_a_json_string_are_understood(sandbox, bot):
    markup = {"inline_keyboard": [[{"text": "Ver", "url": "https://cmms.example/ot/1"}]]}
    response = bot.form("sendMessage", chat_id="42", text="hola", reply_markup=json.dumps(markup),
                        disable_notification="true")
    assert response.status_code == 200
    (record,) = sandbox.messages()
    assert record["reply_markup"] == markup and record["disable_notification"] is True


def test_query_string_params_work_with_get(sandbox, bot):
    response = bot.session.get(bot.url("sendMessage"), params={"chat_id": 7, "text": "por GET"})
    assert response.json()["result"]["text"] == "por GET"


def test_link_preview_options_are_recorded_and_the_legacy_flag_maps_to_them(sandbox, bot):
    bot.send(1, link_preview_options={"is_disabled": True})
    bot.form("sendMessage", chat_id=2, text="x", disable_web_page_preview="true")
    assert [m["link_preview_options"] for m in sandbox.messages()] == [{"is_disabled": True}] * 2


def test_message_ids_increase_per_chat(bot):
    ids = [bot.send(chat).json()["result"]["message_id"] for chat in (10, 10, 20, 10)]
    assert ids == [1, 2, 1, 3]


@pytest.mark.parametrize("text", ["", "   \n "])
def test_send_message_rejects_empty_text(bot, text):
    body = error_of(bot.send(42, text))
    assert body["description"] == "Bad Request: message text is empty"


def test_missing_chat_id_is_rejected(bot):
    assert error_of(bot.call("sendMessage", text="x"))["description"] == "Bad Request: chat_id is empty"


# -- chats -------------------------------------------------------------------------


def test_any_integer_chat_exists_by_default_and_negative_ids_are_groups(bot):
    assert bot.send(99).json()["result"]["chat"]["type"] == "private"
    assert bot.send(-4242).json()["result"]["chat"]["type"] == "group"
    assert bot.send(-1001234567890).json()["result"]["chat"]["type"] == "supergroup"


@pytest.mark.parametrize(
    ("state", "status", "description"),
    [
        ("not_found", 400, "Bad Request: chat not found"),
        ("blocked", 403, "Forbidden: bot was blocked by the user"),
        ("deactivated", 403, "Forbidden: user is deactivated"),
    ],
)
def test_private_chat_states_answer_like_telegram_and_deliver_nothing(sandbox, bot, state, status, description):
    sandbox.set_chat(555, state=state)
    body = error_of(bot.send(555))
    assert (body["error_code"], body["description"]) == (status, description)
    assert sandbox.messages() == []


def test_kicked_from_a_group_is_403(sandbox, bot):
    sandbox.set_chat(-777, state="kicked")
    assert error_of(bot.send(-777))["description"] == "Forbidden: bot was kicked from the group chat"


def test_migrated_group_answers_400_with_migrate_to_chat_id_and_the_new_chat_works(sandbox, control, bot):
    response = control("post", "chats", json={"chat_id": -555006, "state": "migrated",
                                              "migrate_to_chat_id": -1005550060})
    assert response.json()["ok"] is True
    body = error_of(bot.send(-555006))
    assert body == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": -1005550060},
    }
    assert bot.send(-1005550060).status_code == 200


def test_a_chat_id_that_is_neither_a_number_nor_a_username_is_chat_not_found(bot):
    assert error_of(bot.send("operador1"))["description"] == "Bad Request: chat not found"


def test_an_at_username_is_a_channel(sandbox, bot):
    result = bot.send("@planta_norte").json()["result"]
    assert result["chat"]["type"] == "channel" and result["chat"]["username"] == "planta_norte"
    assert len(sandbox.messages(chat_id="@planta_norte")) == 1


def test_strict_chats_only_knows_chats_set_ok(sandbox, bot):
    sandbox.configure(strict_chats=True)
    sandbox.set_chat(42, first_name="Ana")
    assert bot.send(42).json()["result"]["chat"]["first_name"] == "Ana"
    assert error_of(bot.send(43))["description"] == "Bad Request: chat not found"


def test_set_chat_rejects_an_unknown_state(control):
    response = control("post", "chats", json={"chat_id": 1, "state": "sleepy"})
    assert response.status_code == 400 and "state must be one of" in response.json()["error"]


# -- inline keyboards --------------------------------------------------------------


def keyboard(data):
    return {"inline_keyboard": [[{"text": "Aceptar", "callback_data": data}]]}


def test_callback_data_of_64_bytes_is_accepted(bot):
    data = "ñ" * 32  # 32 characters, 64 bytes in UTF-8
    assert bot.send(42, reply_markup=keyboard(data)).status_code == 200


def test_callback_data_of_65_bytes_is_button_data_invalid_even_if_only_33_characters(sandbox, bot):
    data = "ñ" * 32 + "a"
    body = error_of(bot.send(42, reply_markup=keyboard(data)))
    assert body["description"] == "Bad Request: BUTTON_DATA_INVALID"
    assert sandbox.messages() == []


def test_empty_callback_data_is_button_data_invalid(bot):
    assert error_of(bot.send(42, reply_markup=keyboard("")))["description"] == "Bad Request: BUTTON_DATA_INVALID"


@pytest.mark.parametrize("markup", ["{not json", "[1, 2]", json.dumps({"inline_keyboard": "nope"}), "{}"])
def test_malformed_reply_markup_is_rejected(bot, markup):
    body = error_of(bot.form("sendMessage", chat_id=42, text="x", reply_markup=markup))
    assert body["description"] == "Bad Request: can't parse reply keyboard markup JSON object"


@pytest.mark.parametrize(
    "button",
    [{"text": "solo texto"}, {"text": "dos", "callback_data": "a", "url": "https://x.example"}, {"callback_data": "a"}],
)
def test_an_inline_button_needs_text_and_exactly_one_action(bot, button):
    body = error_of(bot.send(42, reply_markup={"inline_keyboard": [[button]]}))
    assert body["description"].startswith("Bad Request: can't parse inline keyboard button")


# -- sendDocument ------------------------------------------------------------------


def test_send_document_uploads_a_file_and_returns_its_document(sandbox, bot):
    response = bot.form("sendDocument", files={"document": ("informe OT-1.pdf", b"%PDF-1.4 informe")},
                        chat_id=42, caption="<b>Informe</b> de la OT", parse_mode="HTML")
    result = response.json()["result"]
    assert result["document"]["file_name"] == "informe OT-1.pdf"
    assert result["document"]["file_size"] == 16
    assert result["document"]["mime_type"] == "application/pdf"
    assert result["caption"] == "Informe de la OT"
    again = bot.call("sendDocument", chat_id=43, document=result["document"]["file_id"]).json()["result"]
    assert again["document"]["file_id"] == result["document"]["file_id"]
    assert [m["method"] for m in sandbox.messages()] == ["sendDocument", "sendDocument"]


def test_send_document_caption_over_1024_visible_characters_is_too_long(bot):
    body = error_of(bot.call("sendDocument", chat_id=42, document="https://cmms.example/a.pdf", caption="x" * 1025))
    assert body["description"] == "Bad Request: message caption is too long"


def test_send_document_without_a_document_is_rejected(bot):
    assert error_of(bot.call("sendDocument", chat_id=42))["description"] == "Bad Request: there is no document in the request"


# -- edits -------------------------------------------------------------------------


def test_edit_message_text_changes_the_record_and_keeps_its_history(sandbox, bot):
    message_id = bot.send(42, "OT-1 pendiente", reply_markup=keyboard("accept_1")).json()["result"]["message_id"]
    result = bot.call("editMessageText", chat_id=42, message_id=message_id, text="OT-1 <i>aceptada</i>",
                      parse_mode="HTML").json()["result"]
    assert result["text"] == "OT-1 aceptada" and "edit_date" in result
    assert "reply_markup" not in result  # an edit without reply_markup removes the keyboard
    (record,) = sandbox.messages(chat_id=42)
    assert record["edited"] is True
    assert record["text"] == "OT-1 aceptada" and record["raw_text"] == "OT-1 <i>aceptada</i>"
    assert [e["method"] for e in record["edits"]] == ["editMessageText"]


def test_an_unchanged_edit_is_message_is_not_modified(bot):
    bot.send(42, "<b>hola</b>", parse_mode="HTML", reply_markup=keyboard("a"))
    body = error_of(bot.call("editMessageText", chat_id=42, message_id=1, text="<strong>hola</strong>",
                             parse_mode="HTML", reply_markup=keyboard("a")))
    assert body["description"] == (
        "Bad Request: message is not modified: specified new message content and reply markup are exactly the "
        "same as a current content and reply markup of the message"
    )


def test_editing_an_unknown_message_is_message_to_edit_not_found(bot):
    bot.send(42)
    body = error_of(bot.call("editMessageText", chat_id=42, message_id=99, text="x"))
    assert body["description"] == "Bad Request: message to edit not found"


def test_edit_message_reply_markup_replaces_the_keyboard_and_repeating_it_is_not_modified(sandbox, bot):
    bot.send(42, reply_markup=keyboard("a"))
    assert bot.call("editMessageReplyMarkup", chat_id=42, message_id=1, reply_markup=keyboard("b")).status_code == 200
    assert sandbox.messages()[0]["reply_markup"] == keyboard("b")
    again = bot.call("editMessageReplyMarkup", chat_id=42, message_id=1, reply_markup=keyboard("b"))
    assert "message is not modified" in error_of(again)["description"]


def test_edits_validate_html_like_send_message(bot):
    bot.send(42)
    body = error_of(bot.call("editMessageText", chat_id=42, message_id=1, text="<b>x", parse_mode="HTML"))
    assert body["description"].startswith("Bad Request: can't parse entities")


# -- transport ---------------------------------------------------------------------


def test_one_keep_alive_connection_serves_many_requests(sandbox):
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    connection.connect()
    socket_before = connection.sock
    for _ in range(20):
        connection.request("POST", f"/bot{TOKEN}/getMe", body=b"{}", headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and not response.will_close
        response.read()
    assert connection.sock is socket_before
    connection.close()


def test_unknown_paths_are_404(sandbox):
    assert requests.get(f"{sandbox.url}/nothing-here", timeout=5).status_code == 404
