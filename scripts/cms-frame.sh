#!/usr/bin/env bash
# Frame a bare AuthEnvelopedData (the eContent `openssl cms -verify -out` writes from a docex
# envelope's outer layer, RFC 5652 §5.2) as the ContentInfo that `openssl cms -decrypt` reads:
#   ContentInfo ::= SEQUENCE { contentType id-ct-authEnvelopedData, content [0] EXPLICIT ... }
# Usage: scripts/cms-frame.sh L2.bare > L2
set -euo pipefail
der_len() {  # DER length octets of $1
  local n=$1
  if [ "$n" -lt 128 ]; then printf '%02x' "$n"
  elif [ "$n" -lt 256 ]; then printf '81%02x' "$n"
  elif [ "$n" -lt 65536 ]; then printf '82%04x' "$n"
  elif [ "$n" -lt 16777216 ]; then printf '83%06x' "$n"
  else printf '84%08x' "$n"; fi
}
bare=$1
n=$(stat -c %s "$bare")
oid=060b2a864886f70d0109100117
inner_len=$(der_len "$n")
explicit=a0${inner_len}
total=$(( ${#oid} / 2 + ${#explicit} / 2 + n ))
header=$(printf '30%s%s%s' "$(der_len "$total")" "$oid" "$explicit")
{ printf "$(printf '%s' "$header" | sed 's/../\\x&/g')"; cat "$bare"; }
