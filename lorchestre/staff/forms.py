"""Staff forms: sign-in, password and TOTP, date ranges and exports; the safe ``next`` target."""

from __future__ import annotations

from datetime import date, timedelta

from flask import url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, PasswordField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from ..consent.forms import safe_next as consent_safe_next
from ..contact.forms import ContactForm
from ..database import utcnow
from ..rights.services import PARIS, REASON_MAX
from .services import MAX_PASSWORD_LENGTH

EARLIEST_DAY = date(2020, 1, 1)
LATEST_DAY = date(2099, 12, 31)
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
BAD_DATE = _l("Enter a date as YYYY-MM-DD.")


def paris_today() -> date:
    """Today in Paris, where a letter's date of receipt is reckoned."""
    return utcnow().astimezone(PARIS).date()


def safe_next(target: str | None) -> str:
    """``target`` if it is a same-origin path inside /staff/, else the staff home page."""
    home = url_for("staff.dashboard")
    # The public rule first (no scheme, host, "//", "\", control characters), then the
    # staff one: signing in only ever leads to a staff page.
    if not target or consent_safe_next(target, "fr") != target:
        return home
    return target if target.startswith("/staff/") else home


class CsrfForm(FlaskForm):
    """A form with nothing but its CSRF token (sign out, disable, run a check)."""


class LoginForm(FlaskForm):
    """E-mail address and password."""

    email = StringField(
        _l("E-mail address"),
        validators=[DataRequired(), Length(max=254)],
        render_kw={"autocomplete": "username", "autofocus": True},
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )


class CodeForm(FlaskForm):
    """A six-digit code from an authenticator app."""

    code = StringField(
        _l("Six-digit code"),
        validators=[DataRequired(), Length(max=12)],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "autofocus": True,
        },
    )


class PasswordChangeForm(FlaskForm):
    """The current password, and the new one twice."""

    current = PasswordField(
        _l("Current password"),
        validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )
    new = PasswordField(
        _l("New password"),
        validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        _l("New password, again"),
        validators=[
            DataRequired(),
            EqualTo("new", message=_l("The two new passwords differ.")),
        ],
        render_kw={"autocomplete": "new-password"},
    )


class TotpDisableForm(FlaskForm):
    """The password, to turn the second factor off."""

    password = PasswordField(
        _l("Current password"),
        validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )


class _Day(DateField):
    """A YYYY-MM-DD date inside the years the site can hold."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("invalid_value_message", BAD_DATE)
        super().__init__(*args, **kwargs)

    def pre_validate(self, form) -> None:
        """Refuse dates far outside the ledger's life (and date arithmetic overflows)."""
        if self.data is not None and not EARLIEST_DAY <= self.data <= LATEST_DAY:
            raise ValidationError(
                _l(
                    "Choose a date between %(first)s and %(last)s.",
                    first=EARLIEST_DAY.isoformat(),
                    last=LATEST_DAY.isoformat(),
                )
            )


class DateRangeForm(FlaskForm):
    """A range of UTC days, both included, read from the query string (no CSRF: GET)."""

    start = _Day(_l("From"), name="from", validators=[Optional()])
    end = _Day(_l("To"), name="to", validators=[Optional()])

    class Meta:
        csrf = False

    def validate_end(self, field: DateField) -> None:
        """The end is not before the start, and the range stays within a year."""
        if self.start.data and field.data:
            if field.data < self.start.data:
                raise ValidationError(_l("The end date is before the start date."))
            if (field.data - self.start.data).days + 1 > MAX_RANGE_DAYS:
                raise ValidationError(
                    _l("Choose a range of at most %(num)d days.", num=MAX_RANGE_DAYS)
                )

    def days(self, today: date) -> tuple[date, date]:
        """The chosen range; a missing end is today, a missing start 30 days before it."""
        start, end = self.start.data, self.end.data
        if start and not end:
            longest = start + timedelta(days=MAX_RANGE_DAYS - 1)
            end = max(start, min(today, longest))
        end = end or today
        start = start or max(EARLIEST_DAY, end - timedelta(days=DEFAULT_RANGE_DAYS - 1))
        return start, end


class LedgerExportForm(FlaskForm):
    """Format and optional range of a ledger export (POST, CSRF-protected)."""

    format = RadioField(
        _l("Format"),
        choices=[SelectChoice("jsonl", "JSONL"), SelectChoice("csv", "CSV")],
        default="jsonl",
        validators=[DataRequired()],
    )
    start = _Day(_l("From (optional)"), name="from", validators=[Optional()])
    end = _Day(_l("To (optional)"), name="to", validators=[Optional()])

    def validate_end(self, field: DateField) -> None:
        """The end is not before the start."""
        if self.start.data and field.data and field.data < self.start.data:
            raise ValidationError(_l("The end date is before the start date."))


class ReasonForm(FlaskForm):
    """The reason for extending or refusing a rights request, told to the person."""

    reason = StringField(
        _l("Reason"),
        validators=[DataRequired(), Length(max=REASON_MAX)],
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        render_kw={"maxlength": REASON_MAX, "autocomplete": "off"},
    )


class RightsRequestForm(FlaskForm):
    """A request received by letter or e-mail, entered in the register by the DPO."""

    kind = RadioField(
        _l("Request"),
        choices=[
            SelectChoice("access", _l("Access to their data")),
            SelectChoice("rectify", _l("Correction")),
            SelectChoice("erase", _l("Erasure")),
            SelectChoice("object", _l("Objection to marketing")),
        ],
        validators=[DataRequired(_l("Choose the type of request."))],
    )
    email = StringField(
        _l("The person’s e-mail address"),
        validators=[DataRequired(), Length(max=254)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    language = RadioField(
        _l("Language of the reply"),
        choices=[SelectChoice("fr", _l("French")), SelectChoice("en", _l("English"))],
        default="fr",
        validators=[DataRequired()],
    )
    received_on = _Day(
        _l("Received on (Paris date; empty for today)"),
        name="received_on",
        validators=[Optional()],
    )

    validate_email = ContactForm.validate_email

    def validate_received_on(self, field: DateField) -> None:
        """Not in the future: the deadline runs from the day the request arrived."""
        if field.data and field.data > paris_today():
            raise ValidationError(_l("The date of receipt cannot be in the future."))
