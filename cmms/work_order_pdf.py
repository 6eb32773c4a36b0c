"""A work order as a one-page printable PDF (``OT-00042.pdf``), attached to
assignment and prediction e-mails. Built in the worker, through
``notifications.documents`` (registered in CmmsConfig.ready()).

ReportLab: a pure-Python wheel (with Pillow's wheels) that installs on a fresh
machine without system packages, and it draws QR codes itself, so the link
back to the order needs no second library (fpdf2 would need one).

``facts(work_order)`` reads the database; ``render(facts)`` only draws.
"""

import io

from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from reportlab import rl_config
from reportlab.graphics.barcode import qrencoder
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas

from notifications.channels import Attachment

FONT, BOLD = "Helvetica", "Helvetica-Bold"
# Compressed streams as binary, not ASCII85 text: a quarter smaller, and
# ReportLab's pure-Python ASCII85 encoder was a tenth of the build time.
rl_config.useA85 = 0
MAX_DESCRIPTION_LINES = 18


def _printable(text):
    """The standard PDF fonts carry WinAnsi (Spanish accents, ñ, €): anything
    else (an emoji in a title) prints as '?' instead of an empty box."""
    return str(text or "").encode("cp1252", "replace").decode("cp1252")


def facts(work_order):
    """What the page shows, in the default language, from the database."""
    from . import messages
    from .models import WorkOrderPriority, WorkOrderStatus

    prediction = work_order.predictions.order_by("-created_at").first()
    with translation.override(settings.LANGUAGE_CODE):
        due = timezone.localtime(work_order.due_at).strftime("%d/%m/%Y %H:%M") if work_order.due_at else "-"
        data = {
            "number": work_order.number or str(work_order.pk),
            "title": work_order.title,
            "asset": f"{work_order.asset.name} ({work_order.asset.code})",
            "location": work_order.asset.site or "-",
            "priority": messages.label(WorkOrderPriority, work_order.priority),
            "status": messages.label(WorkOrderStatus, work_order.status),
            "due": due,
            "assignee": messages.person(work_order.assignee) or _("Unassigned"),
            "description": work_order.description or work_order.title,
            "link": work_order.admin_url(),
            "failure_mode": "",
            "probability": "",
        }
        if prediction is not None:
            data["failure_mode"] = prediction.failure_mode
            data["probability"] = f"{prediction.probability * 100:.0f} %"
        elif work_order.failure_mode:
            data["failure_mode"] = work_order.failure_mode
    return data


def _wrap(text, font, size, width):
    lines = []
    for paragraph in str(text).splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if stringWidth(candidate, font, size) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def qr_modules(text):
    """The QR code of ``text`` as rows of booleans (dark modules), level M.
    Mask pattern 0 rather than ReportLab's search for the best of the eight:
    every mask is valid (ISO/IEC 18004, 7.8) and the search costs ~50 ms of
    pure Python per code, most of a PDF's build time."""
    code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    code.addData(text)
    code.version = code.calculate_version()
    code.makeImpl(False, 0)
    return code.modules


def draw_qr(pdf, text, x, y, size, quiet_zone=4):
    """Dark runs of each row as filled rectangles: one path, no shapes."""
    modules = qr_modules(text)
    box = size / (len(modules) + 2 * quiet_zone)
    path = pdf.beginPath()
    for r, row in enumerate(modules):
        top = y + size - (r + quiet_zone + 1) * box
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                path.rect(x + (start + quiet_zone) * box, top, (c - start) * box, box)
            else:
                c += 1
    pdf.setFillColorRGB(0, 0, 0)
    pdf.drawPath(path, stroke=0, fill=1)


def render(data):
    """The PDF bytes for ``facts()``: one A4 page."""
    with translation.override(settings.LANGUAGE_CODE):
        return _render(data)


def _render(data):
    buffer = io.BytesIO()
    page_w, page_h = A4
    margin = 18 * mm
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    pdf.setTitle(_printable(_("Work order %(number)s") % {"number": data["number"]}))
    pdf.setAuthor("CMMS")

    y = page_h - margin
    pdf.setFont(BOLD, 20)
    pdf.drawString(margin, y - 20, _printable(_("Work order %(number)s") % {"number": data["number"]}))
    pdf.setFont(FONT, 12)
    for i, line in enumerate(_wrap(_printable(data["title"]), FONT, 12, page_w - 2 * margin - 40 * mm)[:2]):
        pdf.drawString(margin, y - 40 - 15 * i, line)

    size = 32 * mm
    draw_qr(pdf, data["link"], page_w - margin - size, y - size, size)

    y -= 40 * mm
    rows = [
        (_("Asset"), data["asset"]),
        (_("Location"), data["location"]),
        (_("Priority"), data["priority"]),
        (_("Status"), data["status"]),
        (_("Due"), data["due"]),
        (_("Assigned to"), data["assignee"]),
    ]
    if data.get("failure_mode"):
        rows.append((_("Failure mode"), data["failure_mode"]))
    if data.get("probability"):
        rows.append((_("Failure probability"), data["probability"]))
    pdf.setStrokeColorRGB(0.8, 0.8, 0.8)
    for label, value in rows:
        pdf.setFont(BOLD, 10)
        pdf.drawString(margin, y, _printable(label))
        pdf.setFont(FONT, 10)
        pdf.drawString(margin + 45 * mm, y, _printable(value)[:90])
        pdf.line(margin, y - 3, page_w - margin, y - 3)
        y -= 7 * mm

    y -= 4 * mm
    pdf.setFont(BOLD, 11)
    pdf.drawString(margin, y, _printable(_("Description")))
    y -= 6 * mm
    pdf.setFont(FONT, 10)
    lines = _wrap(_printable(data["description"]), FONT, 10, page_w - 2 * margin)
    for line in lines[:MAX_DESCRIPTION_LINES]:
        pdf.drawString(margin, y, line)
        y -= 5 * mm
    if len(lines) > MAX_DESCRIPTION_LINES:
        pdf.drawString(margin, y, _printable("… " + _("(continues in the CMMS)")))

    # Room for signatures at the foot of the page, wherever the text ended.
    box_y = margin + 22 * mm
    box_w = (page_w - 2 * margin - 10 * mm) / 2
    for i, label in enumerate((_("Performed by (name and signature)"), _("Approved by (name and signature)"))):
        x = margin + i * (box_w + 10 * mm)
        pdf.rect(x, box_y, box_w, 22 * mm)
        pdf.setFont(FONT, 8)
        pdf.drawString(x + 2 * mm, box_y + 2 * mm, _printable(label))
    pdf.setFont(FONT, 8)
    pdf.drawString(margin, margin + 8 * mm, _printable(_("Date: ____ / ____ / ________")))
    pdf.drawString(margin, margin, _printable(data["link"])[:120])
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def attachment(work_order_id):
    """The Attachment for ``notifications.documents``; None when the order is gone."""
    from .models import WorkOrder

    work_order = WorkOrder.objects.select_related("asset", "assignee").filter(pk=work_order_id).first()
    if work_order is None:
        return None
    data = facts(work_order)
    return Attachment(filename=f"{data['number']}.pdf", content=render(data), mimetype="application/pdf")
