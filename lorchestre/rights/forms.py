"""Rights desk forms: the request, and the correction of one's details."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, RadioField, SelectChoice, StringField
from wtforms.validators import InputRequired, Optional, ValidationError

from ..consent.services import valid_consent_id
from ..contact.forms import ContactForm
from ..textinput import normalise
from .services import KINDS, LeadChanges

KIND_LABELS = {
    "access": _l("Receive a copy of my data"),
    "rectify": _l("Correct my name, phone number or company"),
    "erase": _l("Erase my data"),
    "object": _l("Stop receiving your news by e-mail"),
}


class _ShownBackWithoutNul(FlaskForm):
    """A form whose refused input is shown back without NUL, which HTML cannot carry."""

    def validate(self, extra_validators=None) -> bool:
        """Validate; on refusal, drop NUL from what the page will show back."""
        if super().validate(extra_validators):
            return True
        for field in self:
            if isinstance(field.data, str):
                field.data = field.data.replace("\x00", "")
        return False


class RequestForm(_ShownBackWithoutNul):
    """E-mail address, request type and, optionally, a consent ID."""

    # The same field and checks as the contact form: one address, one meaning.
    email = ContactForm.email
    validate_email = ContactForm.validate_email
    kind = RadioField(
        _l("What would you like to do?"),
        choices=[SelectChoice(kind, KIND_LABELS[kind]) for kind in KINDS],
        # Checked below, so the message is ours and in the page's language.
        validate_choice=False,
        validators=[InputRequired(_l("Please choose what you would like to do."))],
    )
    consent_id = StringField(
        _l("Consent ID (optional)"), filters=[normalise], validators=[Optional()]
    )

    def validate_kind(self, field: Field) -> None:
        """One of the four requests."""
        if field.data not in KINDS:
            raise ValidationError(_l("Please choose what you would like to do."))

    def validate_consent_id(self, field: Field) -> None:
        """The random ID shown on the cookie preferences page, or nothing."""
        if field.data and not valid_consent_id(field.data):
            raise ValidationError(
                _l(
                    "This is not a consent ID: copy it from the “Manage cookies” "
                    "page, or leave the field empty."
                )
            )


class RectifyForm(_ShownBackWithoutNul):
    """Name, phone and company, with exactly the contact form's checks."""

    name = ContactForm.name
    phone = ContactForm.phone
    company = ContactForm.company
    validate_phone = ContactForm.validate_phone

    def changes(self) -> LeadChanges:
        """The validated details; an emptied optional field erases what it held."""
        return LeadChanges(
            name=self.name.data,
            phone=self.phone.data or None,
            company=self.company.data or None,
        )
