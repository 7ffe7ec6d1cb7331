#!/usr/bin/env bash
# Anchor the consent ledger's head outside the database (docs/reliability.md, "Tail
# truncation"): `flask consent anchor` verifies the chain and appends its head
# {"seq","hash","recorded_at","anchored_at"} to FILE, then the new line is copied to
# where whoever can write the database cannot rewrite it:
#   ANCHOR_SSH_TARGET=anchor@10.0.0.30  the line goes to that account by ssh; its
#       authorized_keys entry forces an append, so this host can add but never edit:
#       restrict,command="cat >> /srv/anchors/lorchestre.jsonl" ssh-ed25519 AAAA… lorchestre
#   ANCHOR_MAIL_TO=dpo@example.fr       the line is mailed with mail(1) (bsd-mailx).
# Either, both or (local copy only) neither. Exits non-zero if the chain is broken or
# the copy failed, so the timer's failure shows in `systemctl --failed` and monitoring.
# Usage: deploy/anchor-ledger.sh FILE      (with the app's environment loaded)
set -euo pipefail
file="${1:?usage: anchor-ledger.sh FILE}"
flask="${FLASK:-$(dirname "$0")/../.venv/bin/flask}"
umask 027
mkdir -p "$(dirname "$file")"
"$flask" --app lorchestre consent anchor --output "$file"
line="$(tail -n 1 "$file")"
if [ -n "${ANCHOR_SSH_TARGET:-}" ]; then
  printf '%s\n' "$line" | ssh -o BatchMode=yes \
    -o UserKnownHostsFile=/etc/lorchestre/anchor_known_hosts \
    -i "${ANCHOR_SSH_KEY:-/etc/lorchestre/anchor_ed25519}" "$ANCHOR_SSH_TARGET"
fi
if [ -n "${ANCHOR_MAIL_TO:-}" ]; then
  printf '%s\n' "$line" | mail -s "L'ORCHESTRE PARFUM consent ledger anchor" "$ANCHOR_MAIL_TO"
fi
