"""Admin forms of the omnichannel bot."""

from django import forms

from .models import UserChannelPreference


class UserChannelPreferenceForm(forms.ModelForm):
    """A new preference starts with an empty minimum priority, "the channel's
    default" (critical for SMS); choosing one keeps it. The address is
    validated and normalized by the channel (model clean(): E.164 for phones)."""

    class Meta:
        model = UserChannelPreference
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance._state.adding and "min_priority" in self.fields:
            self.fields["min_priority"].initial = ""

    def _post_clean(self):
        super()._post_clean()
        self.instance._min_priority_given = bool(self.cleaned_data.get("min_priority"))
