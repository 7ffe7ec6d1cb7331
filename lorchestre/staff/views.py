"""Staff area views (spec §8): sign-in, dashboard, DPO exports and register, accounts."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from functools import wraps
from typing import Any

from babel.numbers import get_group_symbol
from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    session,
    stream_with_context,
    url_for,
)
from flask_babel import format_percent, get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..config import LANGUAGES
from ..consent.declarations import load_categories
from ..consent.ledger import verify_chain
from ..consent.services import ACTIONS
from ..database import utcnow
from ..extensions import login_manager
from ..i18n import current_language
from ..models import RightsRequest
from ..policy import PROSPECT_RETENTION_YEARS
from ..rights import services as rights
from ..templating import current_path, local_date
from . import audit, charts, leads, rights_requests, services
from .exports import audit_bundle_file, csv_lines, ledger_export, ledger_head
from .forms import (
    MAX_RANGE_DAYS,
    CodeForm,
    CsrfForm,
    DateRangeForm,
    LedgerExportForm,
    LoginForm,
    PasswordChangeForm,
    ReasonForm,
    RightsRequestForm,
    TotpDisableForm,
    safe_next,
)
from .register import (
    build_register,
    register_headings,
    register_json,
    register_markdown,
)
from .stats import LOCALES, consent_stats, csv_tables, midnight

bp = Blueprint("staff", __name__)

TOTP_SETUP_KEY = "staff_totp_setup"


def requires(role: str) -> Callable:
    """Signed-in staff with at least ``role``; anyone else is sent to sign in or gets 403."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any):
            if not services.role_at_least(current_user.role, role):
                audit.log_event(
                    "access.denied",
                    actor=_user(),
                    target=request.path,
                    detail={"role": current_user.role, "required": role},
                )
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _user():
    """The signed-in account itself (not Flask-Login's proxy), for services."""
    return current_user._get_current_object()


@login_manager.unauthorized_handler
def _sign_in_first() -> Response:
    return redirect(url_for("staff.login", next=safe_next(current_path())))


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal, in the page's language; a dash if none."""
    if value is None:
        return "–"
    pattern = get_locale().percent_formats[None].pattern.replace("#,##0", "#,##0.0", 1)
    return format_percent(value, pattern)


def _number_formatter() -> Callable[[int], str]:
    """Integers grouped the page language's way; far cheaper than Babel per call, which
    matters on a year's dashboard (thousands of cells)."""
    group = get_group_symbol(get_locale())
    return lambda value: f"{int(value):,}".replace(",", group)


@bp.context_processor
def _staff_context() -> dict[str, Any]:
    return {
        "current_user": current_user,
        "number": _number_formatter(),
        "role_at_least": services.role_at_least,
        "format_percent": format_percent,
        "percent": percent,
        "count_axis": charts.count_axis,
        "label_every": charts.label_every,
        "ACTIONS": ACTIONS,
        "max_range_days": MAX_RANGE_DAYS,
        "role_names": {
            "marketing": _("Marketing"),
            "dpo": _("Data protection officer"),
            "admin": _("Administrator"),
        },
        "action_labels": {
            "accept_all": _("Accept all"),
            "reject_all": _("Reject all"),
            "custom": _("Custom choice"),
            "withdraw": _("Withdrawal"),
        },
        "language_names": {"fr": _("French"), "en": _("English")},
        "status_names": {"prospect": _("Prospect"), "client": _("Client")},
        "register_headings": register_headings,
        "rights_requests": rights_requests,
        "due_soon_days": rights_requests.DUE_SOON_DAYS,
        "request_kind_names": {
            "access": _("Access"),
            "rectify": _("Correction"),
            "erase": _("Erasure"),
            "object": _("Objection to marketing"),
        },
        "request_status_names": {
            "received": _("Received"),
            "awaiting_confirmation": _("Link sent, awaiting confirmation"),
            "done": _("Answered"),
            "expired": _("Link never confirmed"),
            "refused": _("Closed without action"),
        },
        "request_channel_names": {
            "desk": _("Self-service desk"),
            "staff": _("Entered by staff"),
        },
        # The desk's own reasons for closing a request, stored in English.
        "desk_reasons": {
            rights.NO_DATA: _("No data is held for this address: no e-mail was sent."),
            rights.ADDRESS_LIMIT: _(
                "The daily limit of e-mails for this address was reached: "
                "no e-mail was sent."
            ),
        },
    }


@bp.after_request
def _private(response: Response) -> Response:
    # Staff pages may hold personal data: never cached, never indexed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _throttled(
    template: str, wait: int, **context: Any
) -> tuple[str, int, dict[str, str]]:
    minutes = max(1, -(-wait // 60))
    message = _(
        "Too many attempts. Please wait %(num)d minutes before trying again.",
        num=minutes,
    )
    return (
        render_template(template, throttle_message=message, **context),
        429,
        {"Retry-After": str(wait)},
    )


# --- Sign-in ----------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    """E-mail and password; the same answer whether or not the account exists."""
    next_path = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_path)
    form = LoginForm()
    if form.validate_on_submit():
        wait = services.throttle("staff-login", form.email.data)
        if wait:
            return _throttled("staff/login.html", wait, form=form, next_path=next_path)
        user = services.authenticate(form.email.data, form.password.data)
        if user is None:
            form.password.errors.append(_("Incorrect e-mail address or password."))
        elif user.totp_secret:
            services.start_second_step(user, next_path)
            return redirect(url_for("staff.login_code"), 303)
        else:
            services.clear_throttle("staff-login", form.email.data)
            services.begin_session(user)
            return redirect(next_path, 303)
    return render_template("staff/login.html", form=form, next_path=next_path)


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    """The second step for accounts with TOTP: a code from the authenticator app."""
    pending = services.pending_second_step()
    if pending is None:
        flash(_("Please sign in again."), "error")
        return redirect(url_for("staff.login"))
    user, next_path = pending
    form = CodeForm()
    if form.validate_on_submit():
        wait = services.throttle("staff-totp", str(user.id))
        if wait:
            return _throttled("staff/login_code.html", wait, form=form)
        if services.complete_second_step(user, form.code.data):
            services.clear_throttle("staff-login", user.email)
            return redirect(safe_next(next_path), 303)
        form.code.errors.append(_("This code is not valid. Enter the current one."))
    return render_template("staff/login_code.html", form=form)


@bp.post("/logout")
@login_required
def logout() -> Response:
    """Sign out; every session of this account ends with this one."""
    services.end_session(_user())
    flash(_("You have signed out."), "info")
    return redirect(url_for("staff.login"), 303)


# --- Own account ------------------------------------------------------------------------


@bp.route("/account", methods=["GET", "POST"])
@requires("marketing")
def account():
    """Change one's password; see and manage the second factor."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        try:
            services.change_password(_user(), form.current.data, form.new.data)
        except services.AccountError as exc:
            form.new.errors.append(str(exc))
        else:
            flash(
                _("Your password has been changed; your other sessions have ended."),
                "info",
            )
            return redirect(url_for("staff.account"), 303)
    return render_template("staff/account.html", form=form, totp_form=TotpDisableForm())


@bp.route("/account/totp", methods=["GET", "POST"])
@requires("marketing")
def totp_setup():
    """Turn on the second factor: show a new secret, then check one code from it."""
    if current_user.totp_secret:
        return redirect(url_for("staff.account"))
    form = CodeForm()
    secret = session.get(TOTP_SETUP_KEY)
    if form.validate_on_submit() and secret:
        if services.enable_totp(_user(), secret, form.code.data):
            session.pop(TOTP_SETUP_KEY, None)
            flash(_("Two-step sign-in is on."), "info")
            return redirect(url_for("staff.account"), 303)
        form.code.errors.append(_("This code is not valid. Enter the current one."))
    if not secret:
        secret = session[TOTP_SETUP_KEY] = services.new_totp_secret()
    return render_template(
        "staff/totp_setup.html",
        form=form,
        secret=secret,
        secret_groups=[secret[i : i + 4] for i in range(0, len(secret), 4)],
        uri=services.totp_uri(_user(), secret),
    )


@bp.post("/account/totp/disable")
@requires("marketing")
def totp_disable() -> Response:
    """Turn off the second factor, with the password."""
    form = TotpDisableForm()
    if form.validate_on_submit():
        try:
            services.disable_totp(_user(), form.password.data)
        except services.AccountError as exc:
            flash(str(exc), "error")
        else:
            flash(_("Two-step sign-in is off."), "info")
    return redirect(url_for("staff.account"), 303)


# --- Dashboard (marketing and up) -------------------------------------------------------


def _range_form() -> DateRangeForm:
    return DateRangeForm(formdata=request.args)


@bp.get("/")
@requires("marketing")
def dashboard():
    """Consent statistics over a range of days: charts, their tables, CSV links."""
    form = _range_form()
    if not form.validate():
        return render_template("staff/dashboard.html", form=form, stats=None)
    start, end = form.days(utcnow().date())
    form.start.data, form.end.data = start, end  # show the range the figures cover
    stats = consent_stats(start, end)
    categories = [c for c in load_categories() if not c.required]
    lang = current_language()
    return render_template(
        "staff/dashboard.html",
        form=form,
        stats=stats,
        categories=categories,
        locales=LOCALES,
        range_args={"from": start.isoformat(), "to": end.isoformat()},
        day_labels={d.day: local_date(d.day) for d in stats.days},
        # One bar per series in each group, for the two rate charts.
        category_groups=[
            (c.label(lang), {"all": stats.overall.opt_in[c.key]}) for c in categories
        ],
        language_groups=[
            (
                c.label(lang),
                {loc: stats.languages[loc].opt_in[c.key] for loc in LOCALES},
            )
            for c in categories
        ],
    )


@bp.get("/stats.csv")
@requires("marketing")
def stats_csv() -> Response:
    """One of the dashboard's tables as CSV, for the same range."""
    form = _range_form()
    if not form.validate():
        return render_template("staff/dashboard.html", form=form, stats=None), 400
    name = request.args.get("table", "daily")
    start, end = form.days(utcnow().date())
    tables = csv_tables(consent_stats(start, end))
    if name not in tables:
        abort(404)
    audit.log_event(
        "export.stats",
        actor=_user(),
        target=name,
        detail={"from": start.isoformat(), "to": end.isoformat()},
    )
    header, rows = tables[name]
    filename = f"consent-stats-{name}-{start.isoformat()}_{end.isoformat()}.csv"
    return Response(
        csv_lines(header, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- Ledger, exports, verification (DPO) ------------------------------------------------


def _ledger_page(status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("export_form", LedgerExportForm())
    return (
        render_template("staff/ledger.html", head=ledger_head(), **context),
        status,
    )


@bp.get("/ledger")
@requires("dpo")
def ledger():
    """The chain head, the export and bundle forms, and the verification button."""
    return _ledger_page()


@bp.post("/ledger/export")
@requires("dpo")
def ledger_export_download():
    """Stream the ledger (JSONL or CSV) for a range of days, ending with a trailer line."""
    form = LedgerExportForm()
    if not form.validate_on_submit():
        return _ledger_page(400, export_form=form)
    fmt = form.format.data
    start, end = form.start.data, form.end.data
    since = midnight(start) if start else None
    until = midnight(end + timedelta(days=1)) if end else None
    audit.log_event(
        "export.ledger",
        actor=_user(),
        detail={
            "format": fmt,
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
        },
    )
    span = f"{start or 'start'}_{end or utcnow().date()}"
    filename = f"consent-ledger-{span}.{fmt}"
    return Response(
        stream_with_context(ledger_export(fmt, since, until)),
        mimetype="text/csv" if fmt == "csv" else "application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Accel-Buffering": "no",  # let a proxy pass the stream on as it comes
        },
    )


@bp.post("/ledger/audit-bundle")
@requires("dpo")
def audit_bundle() -> Response:
    """The auditor's zip (ledger, wordings, declarations, manifest), built then sent."""
    handle, manifest = audit_bundle_file()
    audit.log_event(
        "export.audit_bundle",
        actor=_user(),
        detail={
            "row_count": manifest["row_count"],
            "head_hash": manifest["head_hash"],
            "verified": manifest["verification"]["ok"],
        },
    )
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    response = send_file(
        handle,
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"lorchestre-audit-bundle-{stamp}.zip",
    )
    response.headers["X-Ledger-Row-Count"] = str(manifest["row_count"])
    response.headers["X-Ledger-Head-Hash"] = str(manifest["head_hash"])
    return response


@bp.post("/ledger/verify")
@requires("dpo")
def ledger_verify():
    """Recompute every hash now and show the result (as `flask consent verify` does)."""
    result = verify_chain()
    audit.log_event(
        "ledger.verify",
        actor=_user(),
        detail={
            "ok": result.ok,
            "count": result.count,
            "head_hash": result.head_hash,
            "first_bad_seq": result.first_bad_seq,
        },
    )
    return _ledger_page(verification=result)


# --- Processing register (DPO) ----------------------------------------------------------


def _register_language() -> str:
    lang = request.args.get("lang", "")
    return lang if lang in LANGUAGES else current_language()


@bp.get("/register")
@requires("dpo")
def register():
    """The GDPR Art. 30 register, printable."""
    lang = _register_language()
    return render_template(
        "staff/register.html", register=build_register(lang), register_lang=lang
    )


@bp.get("/register.<any(json, md):fmt>")
@requires("dpo")
def register_download(fmt: str) -> Response:
    """The register as JSON or Markdown, in the page's language or ?lang=."""
    built = build_register(_register_language())
    audit.log_event(
        "export.register", actor=_user(), target=fmt, detail={"lang": built.locale}
    )
    filename = f"processing-register-{built.locale}-{built.generated_at[:10]}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "json":
        response = Response(
            _json_text(register_json(built)),
            mimetype="application/json",
            headers=headers,
        )
    else:
        response = Response(
            register_markdown(built), mimetype="text/markdown", headers=headers
        )
    return response


def _json_text(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


# --- Leads (DPO) -------------------------------------------------------------------------


MAX_PAGE = 100_000


def _page_number() -> int:
    """The ?page= asked for, bounded both ways: a huge one must not overflow the SQL offset."""
    return min(max(1, request.args.get("page", 1, type=int) or 1), MAX_PAGE)


def _lead_search() -> tuple[str, int]:
    return leads.clean_query(request.args.get("q")), _page_number()


@bp.get("/leads")
@requires("dpo")
def leads_list():
    """Leads, latest interaction first, searched by name, e-mail or company."""
    query, page_number = _lead_search()
    # Logged first: the log's commit would otherwise expire the leads just loaded.
    audit.log_event(
        "view.leads", actor=_user(), detail={"q": query, "page": page_number}
    )
    page = leads.leads_page(query, page_number)
    return render_template(
        "staff/leads.html",
        page=page,
        query=query,
        retention_due=leads.retention_due,
        retention_years=PROSPECT_RETENTION_YEARS,
    )


@bp.get("/leads.csv")
@requires("dpo")
def leads_csv() -> Response:
    """The leads matching the search (every page) as CSV, formula-safe."""
    query, _page = _lead_search()
    audit.log_event("export.leads", actor=_user(), detail={"q": query})
    filename = f"leads-{utcnow().date().isoformat()}.csv"
    return Response(
        stream_with_context(csv_lines(leads.CSV_HEADER, leads.csv_rows(query))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/leads/<public_id>")
@requires("dpo")
def lead_detail(public_id: str):
    """One lead: details, messages and marketing consent history."""
    lead = leads.get_lead(public_id)
    if lead is None:
        abort(404)
    audit.log_event("view.lead", actor=_user(), target=lead.public_id)
    return render_template(
        "staff/lead.html",
        lead=lead,
        messages=leads.lead_messages(lead),
        consent_events=leads.consent_history(lead),
        retention_due=leads.retention_due(lead),
        back_query=leads.clean_query(request.args.get("q")),
    )


# --- Audit log (DPO) and staff accounts (admin) ----------------------------------------


@bp.get("/audit")
@requires("dpo")
def audit_log():
    """The latest staff audit events, newest first."""
    page = audit.events_page(request.args.get("page", 1, type=int))
    audit.log_event("view.audit_log", actor=_user(), detail={"page": page.page})
    return render_template("staff/audit.html", page=page)


@bp.get("/accounts")
@requires("admin")
def accounts():
    """Every staff account, with buttons to disable or enable it."""
    audit.log_event("view.staff_accounts", actor=_user())
    return render_template("staff/accounts.html", accounts=services.list_accounts())


@bp.post("/accounts/<int:user_id>/<any(disable, enable):change>")
@requires("admin")
def account_change(user_id: int, change: str) -> Response:
    """Disable (ending its sessions) or re-enable an account."""
    form = CsrfForm()
    if form.validate_on_submit():
        try:
            user = services.set_active(user_id, change == "enable", actor=_user())
        except services.AccountError as exc:
            flash(str(exc), "error")
        else:
            message = (
                _("%(email)s can sign in again.", email=user.email)
                if user.active
                else _("%(email)s is disabled and signed out.", email=user.email)
            )
            flash(message, "info")
    return redirect(url_for("staff.accounts"), 303)


# --- Rights-request register (DPO) --------------------------------------------------------


def _register_filters() -> tuple[str, str | None, int]:
    return (
        rights_requests.clean_view(request.args.get("view")),
        rights_requests.clean_kind(request.args.get("kind")),
        _page_number(),
    )


@bp.get("/requests")
@requires("dpo")
def requests_list():
    """Rights requests with their deadlines: open ones first by due date, overdue flagged."""
    view, kind, page_number = _register_filters()
    now = utcnow()
    audit.log_event(
        "view.rights_register",
        actor=_user(),
        detail={"view": view, "kind": kind, "page": page_number},
    )
    return render_template(
        "staff/rights_requests.html",
        page=rights_requests.register_page(view, kind, page_number, now),
        summary=rights_requests.summary(now),
        view=view,
        kind=kind,
        now=now,
    )


@bp.get("/requests.csv")
@requires("dpo")
def requests_csv() -> Response:
    """The register for the chosen view and type as CSV (no address is ever in it)."""
    view, kind, _page = _register_filters()
    now = utcnow()
    audit.log_event(
        "export.rights_register", actor=_user(), detail={"view": view, "kind": kind}
    )
    filename = f"rights-requests-{view}-{now.date().isoformat()}.csv"
    return Response(
        stream_with_context(
            csv_lines(
                rights_requests.CSV_HEADER, rights_requests.csv_rows(view, kind, now)
            )
        ),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _request_page(
    entry: RightsRequest, status: int = 200, problem: str = "", **forms: Any
) -> tuple[str, int]:
    forms.setdefault("extend_form", ReasonForm(prefix="extend"))
    forms.setdefault("refuse_form", ReasonForm(prefix="refuse"))
    now = utcnow()
    return (
        render_template(
            "staff/rights_request.html",
            entry=entry,
            now=now,
            lead_public_id=rights_requests.lead_public_id(entry),
            done_form=CsrfForm(),
            problem=problem,
            **forms,
        ),
        status,
    )


def _entry_or_404(request_id: int) -> RightsRequest:
    entry = rights_requests.get_request(request_id)
    if entry is None:
        abort(404)
    return entry


@bp.get("/requests/<int:request_id>")
@requires("dpo")
def request_detail(request_id: int):
    """One request: dates, deadline, what the desk did, and the DPO's actions."""
    entry = _entry_or_404(request_id)
    audit.log_event(
        "view.rights_request", actor=_user(), target=f"rights-request:{entry.id}"
    )
    return _request_page(entry)


def _register_error_message(error: rights.RegisterError) -> str:
    """What a refused register change means, in the page's language."""
    if isinstance(error, rights.AlreadyExtended):
        return _(
            "This request has already been extended; it can be extended only once."
        )
    if isinstance(error, rights.ExtensionTooLate):
        return _(
            "This request is overdue: an extension had to be decided within the "
            "first month."
        )
    if isinstance(error, rights.InvalidReason):
        return _("Give the reason on one line, in at most %(num)d characters.",
                 num=rights.REASON_MAX)  # fmt: skip
    return _("This request is closed: it can no longer change.")


@bp.post("/requests/<int:request_id>/<any(extend, refuse):change>")
@requires("dpo")
def request_with_reason(request_id: int, change: str):
    """Extend the deadline once by two months, or refuse; both need a reason."""
    entry = _entry_or_404(request_id)
    form = ReasonForm(prefix=change)
    if not form.validate_on_submit():
        return _request_page(entry, 400, **{f"{change}_form": form})
    act = rights.extend_request if change == "extend" else rights.refuse_request
    try:
        act(request_id, form.reason.data, actor=_user())
    except rights.InvalidReason as exc:
        form.reason.errors.append(_register_error_message(exc))
        return _request_page(entry, 400, **{f"{change}_form": form})
    except rights.RegisterError as exc:
        # Nothing to correct in the form: the request itself no longer allows it.
        return _request_page(entry, 409, problem=_register_error_message(exc))
    if change == "extend":
        flash(
            _(
                "Deadline extended by two months. Tell the person, with the reason, "
                "before the first month ends."
            ),
            "info",
        )
    else:
        flash(
            _(
                "Request refused. Tell the person why, and that they may complain to "
                "the CNIL or go to court."
            ),
            "info",
        )
    return redirect(url_for("staff.request_detail", request_id=request_id), 303)


@bp.post("/requests/<int:request_id>/done")
@requires("dpo")
def request_done(request_id: int):
    """Record that the request has been answered."""
    entry = _entry_or_404(request_id)
    form = CsrfForm()
    if not form.validate_on_submit():
        return _request_page(entry, 400)
    try:
        rights.mark_done(request_id, actor=_user())
    except rights.RegisterError as exc:
        flash(_register_error_message(exc), "error")
    else:
        flash(_("Request marked as answered."), "info")
    return redirect(url_for("staff.request_detail", request_id=request_id), 303)


@bp.route("/requests/new", methods=["GET", "POST"])
@requires("dpo")
def request_new():
    """Enter a request received by letter or e-mail; its deadline runs from receipt."""
    form = RightsRequestForm()
    if form.validate_on_submit():
        received_at = None
        if form.received_on.data:
            # Noon in Paris on the day of receipt: the due date is the same Paris day.
            received_at = datetime.combine(
                form.received_on.data, time(12), tzinfo=rights.PARIS
            ).astimezone(UTC)
        entry = rights.register_request(
            kind=form.kind.data,
            email=form.email.data,
            language=form.language.data,
            received_at=received_at,
            actor=_user(),
        )
        flash(_("Request no. %(num)d entered in the register.", num=entry.id), "info")
        return redirect(url_for("staff.request_detail", request_id=entry.id), 303)
    status = 400 if form.is_submitted() else 200
    return render_template("staff/rights_request_new.html", form=form), status
