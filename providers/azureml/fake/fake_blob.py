"""The fake's own Blob Storage client (stdlib only): SAS signing with the account key, and the
few blob calls it needs (create a container, put, get, list) against Azurite or any account
whose key it is given.

Signing follows the documented string-to-sign of signed version 2019-12-12, HMAC-SHA256 over
UTF-8 with the base64-decoded account key:

- service SAS (container, `sr=c`), given to clients as `sasUri` of a pending upload;
- account SAS (`ss=b&srt=sco`), used by the fake itself to read inputs and write outputs.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

SAS_VERSION = "2019-12-12"
API_VERSION = "2021-08-06"
# The public, well-known key of the storage emulator (Azurite), not a secret.
EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class BlobError(Exception):
    """A blob call failed; the message names the URL (without its signature) and the status."""


def _expiry(hours: int = 24) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def redact(url: str) -> str:
    """`url` without its query (a SAS is a credential: never in a log or an error)."""
    return url.split("?", 1)[0]


class Account:
    """A storage account: its base URL (path-style for Azurite,
    `http://127.0.0.1:10000/devstoreaccount1`) and its key."""

    def __init__(self, url: str, key: str = EMULATOR_KEY):
        self.url = url.rstrip("/")
        parsed = urllib.parse.urlsplit(self.url)
        segments = [s for s in parsed.path.split("/") if s]
        # Path-style (emulator) URLs carry the account name; host-style ones start with it.
        self.name = segments[0] if segments else parsed.hostname.split(".")[0]
        self._key = base64.b64decode(key)

    def _sign(self, string_to_sign: str) -> str:
        return base64.b64encode(hmac.new(self._key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()).decode()

    def container_sas(self, container: str, permissions: str = "racwdl", hours: int = 24) -> str:
        """A service SAS for one container (query string, without `?`)."""
        se = _expiry(hours)
        fields = [
            permissions,  # signedPermissions
            "",  # signedStart
            se,  # signedExpiry
            f"/blob/{self.name}/{container}",  # canonicalizedResource
            "",  # signedIdentifier
            "",  # signedIP
            "",  # signedProtocol
            SAS_VERSION,  # signedVersion
            "c",  # signedResource
            "",  # signedSnapshotTime
            "",  # rscc
            "",  # rscd
            "",  # rsce
            "",  # rscl
            "",  # rsct
        ]
        sig = self._sign("\n".join(fields))
        return urllib.parse.urlencode({"sv": SAS_VERSION, "se": se, "sr": "c", "sp": permissions, "sig": sig})

    def account_sas(self, permissions: str = "racwdl", hours: int = 24) -> str:
        """An account SAS for every container and blob (query string, without `?`)."""
        se = _expiry(hours)
        fields = [self.name, permissions, "b", "sco", "", se, "", "", SAS_VERSION, ""]
        sig = self._sign("\n".join(fields))
        return urllib.parse.urlencode({"sv": SAS_VERSION, "ss": "b", "srt": "sco", "sp": permissions, "se": se, "sig": sig})

    def owns(self, url: str) -> bool:
        return redact(url).rstrip("/").startswith(self.url + "/") or redact(url).rstrip("/") == self.url

    def signed(self, url: str) -> str:
        """`url` with a signature: its own SAS when it has one, else the fake's account SAS."""
        if "sig=" in urllib.parse.urlsplit(url).query:
            return url
        if not self.owns(url):
            raise BlobError(f"{redact(url)} is not in the storage account the fake can sign for ({self.url})")
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}{self.account_sas()}"

    # --- calls --------------------------------------------------------------------------------

    def _call(self, method: str, url: str, data: bytes | None = None, headers: dict | None = None):
        h = {"x-ms-version": API_VERSION, "x-ms-date": _now_rfc1123()}
        h.update(headers or {})
        req = urllib.request.Request(self.signed(url), data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except urllib.error.URLError as e:
            raise BlobError(f"{method} {redact(url)}: {e.reason}") from None

    def create_container(self, container: str) -> None:
        status, body = self._call("PUT", f"{self.url}/{container}?restype=container", data=b"")
        if status not in (201, 409):
            raise BlobError(f"creating container {container}: HTTP {status}: {_error_text(body)}")

    def put(self, url: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        status, body = self._call(
            "PUT", url, data=data, headers={"x-ms-blob-type": "BlockBlob", "Content-Type": content_type}
        )
        if status != 201:
            raise BlobError(f"PUT {redact(url)}: HTTP {status}: {_error_text(body)}")

    def get(self, url: str) -> bytes | None:
        status, body = self._call("GET", url)
        if status == 404:
            return None
        if status != 200:
            raise BlobError(f"GET {redact(url)}: HTTP {status}: {_error_text(body)}")
        return body

    def list(self, url: str) -> list[str]:
        """The blob URLs under `url` (a container URL plus an optional prefix), unsigned."""
        base = redact(url).rstrip("/")
        rest = base[len(self.url) + 1 :] if self.owns(base) else None
        if rest is None:
            parsed = urllib.parse.urlsplit(base)
            segs = parsed.path.lstrip("/").split("/", 1)
            container_url = f"{parsed.scheme}://{parsed.netloc}/{segs[0]}"
            prefix = segs[1] if len(segs) > 1 else ""
        else:
            container, _, prefix = rest.partition("/")
            container_url = f"{self.url}/{container}"
        query = urllib.parse.urlsplit(url).query
        out, marker = [], ""
        while True:
            params = {"restype": "container", "comp": "list", "prefix": prefix}
            if marker:
                params["marker"] = marker
            list_url = f"{container_url}?{urllib.parse.urlencode(params)}"
            if "sig=" in query:
                list_url += "&" + query
            status, body = self._call("GET", list_url)
            if status != 200:
                raise BlobError(f"listing {redact(container_url)} prefix {prefix!r}: HTTP {status}: {_error_text(body)}")
            root = ET.fromstring(body)
            for name in root.iter("Name"):
                out.append(f"{container_url}/{urllib.parse.quote(name.text or '')}")
            marker = (root.findtext("NextMarker") or "").strip()
            if not marker:
                return out

    def download_tree(self, url: str, dest: Path) -> int:
        """Download the blob at `url`, or every blob under the folder `url`, into `dest`
        (keeping paths relative to `url`). Returns how many files; 0 when nothing is there."""
        base = redact(url).rstrip("/")
        query = urllib.parse.urlsplit(url).query
        sas = f"?{query}" if "sig=" in query else ""
        count = 0
        for blob in self.list(base + "/" + sas):
            rel = urllib.parse.unquote(blob[len(base) + 1 :])
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self.get(blob + sas)
            target.write_bytes(data or b"")
            count += 1
        return count

    def upload_tree(self, src: Path, url: str) -> int:
        """Upload every file under `src` to the folder `url`. Returns how many files."""
        base = redact(url).rstrip("/")
        query = urllib.parse.urlsplit(url).query
        sas = f"?{query}" if "sig=" in query else ""
        count = 0
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src).as_posix()
            self.put(f"{base}/{urllib.parse.quote(rel)}{sas}", path.read_bytes())
            count += 1
        return count


def _now_rfc1123() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def _error_text(body: bytes) -> str:
    try:
        root = ET.fromstring(body)
        code = root.findtext("Code") or ""
        message = (root.findtext("Message") or "").splitlines()[0] if root.findtext("Message") else ""
        return f"{code} {message}".strip() or body[:200].decode("utf-8", "replace")
    except ET.ParseError:
        return body[:200].decode("utf-8", "replace")
