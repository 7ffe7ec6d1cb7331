"""The contact form: fields, limits and messages in the page's language."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Field, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ..marketing.services import CONSENT_LABEL
from ..textinput import (
    InvalidEmail,
    has_forbidden_characters,
    normalise,
    normalise_multiline,
)
from ..textinput import parse_email as _parse_email

# The columns are at least this long (tests/test_contact.py checks it).
NAME_MAX = 100
EMAIL_MAX = 254  # RFC 5321 path limit
PHONE_MAX = 32
COMPANY_MAX = 120
MESSAGE_MAX = 5000

# Digits with the usual separators, an optional leading "+": enough to call back,
# strict enough that "=cmd|..." or "+2+3" never reaches the CRM as a phone number.
_PHONE = re.compile(r"\+?[0-9][0-9 ().\-/]*")
PHONE_MIN_DIGITS = 6
PHONE_MAX_DIGITS = 20


class SingleLine:
    """Refuse CR, LF and other control or invisible characters in a one-line field."""

    def __call__(self, form: FlaskForm, field: Field) -> None:
        if field.data and has_forbidden_characters(field.data):
            raise ValidationError(
                _l(
                    "Please remove the line breaks or invisible characters "
                    "from this field."
                )
            )


class CleanMessage:
    """Refuse control characters and bidi overrides in a message; newlines are fine."""

    def __call__(self, form: FlaskForm, field: Field) -> None:
        if field.data and has_forbidden_characters(field.data, multiline=True):
            raise ValidationError(
                _l(
                    "Please remove the control or invisible characters "
                    "from your message."
                )
            )


def _max_length(limit: int) -> Length:
    return Length(max=limit, message=_l("Please keep to %(max)d characters at most."))


class ContactForm(FlaskForm):
    """Name, e-mail, optional phone and company, message, marketing opt-in, honeypot."""

    name = StringField(
        _l("Your name"),
        filters=[normalise],
        validators=[
            DataRequired(_l("Please enter your name.")),
            _max_length(NAME_MAX),
            SingleLine(),
        ],
    )
    email = EmailField(
        _l("Your e-mail address"),
        filters=[normalise],
        validators=[
            DataRequired(_l("Please enter your e-mail address.")),
            _max_length(EMAIL_MAX),
        ],
    )
    phone = StringField(
        _l("Phone (optional)"),
        filters=[normalise],
        validators=[Optional(), _max_length(PHONE_MAX), SingleLine()],
    )
    company = StringField(
        _l("Company (optional)"),
        filters=[normalise],
        validators=[Optional(), _max_length(COMPANY_MAX), SingleLine()],
    )
    message = TextAreaField(
        _l("Your message"),
        filters=[normalise_multiline],
        validators=[
            DataRequired(_l("Please write your message.")),
            _max_length(MESSAGE_MAX),
            CleanMessage(),
        ],
    )
    marketing = BooleanField(CONSENT_LABEL, default=False)
    # Honeypot: hidden from people (CSS and aria-hidden), filled in by naive bots.
    website = StringField(_l("Leave this field empty"))

    def validate_email(self, field: Field) -> None:
        """Keep email-validator's normalised form, or explain what is wrong."""
        if not field.data or len(field.data) > EMAIL_MAX:
            return  # the required and length checks already said so
        try:
            field.data = _parse_email(field.data).normalized
        except InvalidEmail as exc:
            raise ValidationError(
                _l("Please enter a valid e-mail address, such as name@example.com.")
            ) from exc

    def validate_phone(self, field: Field) -> None:
        """Digits and the usual separators only."""
        if not field.data or has_forbidden_characters(field.data):
            return
        digits = sum(ch.isdigit() for ch in field.data)
        if (
            not _PHONE.fullmatch(field.data)
            or not PHONE_MIN_DIGITS <= digits <= PHONE_MAX_DIGITS
        ):
            raise ValidationError(
                _l(
                    "Please enter a phone number with digits, spaces "
                    "and + ( ) - . / only."
                )
            )

    def validate(self, extra_validators=None) -> bool:
        """Validate; a refused form is shown back without NUL, which HTML cannot carry."""
        if super().validate(extra_validators):
            return True
        for field in self:
            if isinstance(field.data, str):
                field.data = field.data.replace("\x00", "")
        return False

    def is_bot(self) -> bool:
        """Whether the honeypot was filled in."""
        return bool(self.website.data)
