"""``ga4gh-broker demo --check``: the demo's copy-paste session, run without a person.

Against a running demo (its URL; the folder gives the generated passwords and the files'
checksums), every step as a person or their terminal does it, over HTTP and with the real
``ga4gh-broker`` commands in child processes (their own config folder, so the user's saved
logins are never touched):

1. the broker answers (``/readyz``, discovery names the URL as issuer);
2. Alice logs in in a "browser" (a cookie session through the login form) and sees her visas;
3. ``ga4gh-broker login``: the device flow, its code approved in Alice's browser session;
4. ``whoami`` names Alice;
5. ``download`` of DEMO-VCF with a declared purpose, checksums as in ``data/SHA256SUMS``;
6. Dora, the DAC chair, gets a ``dac`` token (device flow in her browser session) and resets
   Alice's DEMO-BAM grants, so the session can run again and again;
7. ``download`` of DEMO-BAM is refused: 403 with the required-visas document;
8. Dora grants Alice DEMO-BAM through ``POST /api/dac/grants``;
9. the download of DEMO-BAM now succeeds;
10. the grant is revoked again, leaving the demo as it was.

The first failing step is named and the run stops (exit 1); every step passing is exit 0.
No password or token is printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urljoin, urlsplit

import requests

from broker.demo.folder import BAM_DATASET, CLIENT_ID, DEVICE_GRANT, PURPOSE, VCF_DATASET, read_passwords, read_state
from broker.demo.genomics import sha256_of

TIMEOUT = 30
COMMAND_TIMEOUT = 180


class StepFailed(Exception):
    """A step of the session did not do what it should; the message says what happened instead."""


@dataclass
class Form:
    """One HTML form: where it posts and its named inputs (hidden values included)."""

    action: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    """Collects the forms of a page (the broker's pages are small and regular)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = Form(values.get("action", ""))
            self.forms.append(self._open)
        elif self._open is not None and tag == "input" and values.get("name"):
            self._open.fields[values["name"]] = values.get("value", "")
        elif self._open is not None and tag == "button" and values.get("name"):
            self._open.buttons[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def forms_of(page: str) -> list[Form]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


class Browser:
    """A person's browser: one cookie jar, redirects followed, forms posted as they are."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return urljoin(self.base + "/", path)

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url(path), timeout=TIMEOUT)

    def submit(self, response: requests.Response, form: Form, **values: str) -> requests.Response:
        return self.http.post(urljoin(response.url, form.action), data={**form.fields, **values}, timeout=TIMEOUT)

    def log_in_if_asked(self, response: requests.Response, username: str, password: str) -> requests.Response:
        """On the login page, fill in the local account form; anywhere else, nothing to do."""
        if urlsplit(response.url).path != "/login":
            return response
        local = [f for f in forms_of(response.text) if "/login/local/" in f.action]
        if not local:
            raise StepFailed(f"the login page at {response.url} has no local account form")
        answer = self.submit(response, local[0], username=username, password=password)
        if urlsplit(answer.url).path == "/login" or answer.status_code == 401:
            raise StepFailed(f"the broker refused {username}'s password (HTTP {answer.status_code})")
        return answer

    def approve_device(self, user_code: str, username: str, password: str) -> None:
        """Open the verification URL with the code, log in if asked, continue, allow."""
        page = self.log_in_if_asked(self.get(f"/device?user_code={user_code}"), username, password)
        entry = [f for f in forms_of(page.text) if "user_code" in f.fields]
        if page.status_code != 200 or not entry:
            raise StepFailed(f"the device page did not offer the code form (HTTP {page.status_code})")
        consent = self.submit(page, entry[0], user_code=user_code)
        allow = [f for f in forms_of(consent.text) if f.buttons.get("decision") is not None]
        if consent.status_code != 200 or not allow:
            raise StepFailed(f"entering the code did not lead to the allow page (HTTP {consent.status_code})")
        done = self.submit(consent, allow[0], decision="allow")
        if done.status_code != 200 or "connected" not in done.text:
            raise StepFailed(f"allowing the device was not confirmed (HTTP {done.status_code})")


@dataclass
class Session:
    """What the steps share: the demo's URL and folder, the people, a scratch folder."""

    base: str
    folder: Path
    scratch: Path
    subs: dict[str, str]
    passwords: dict[str, str]
    checksums: dict[str, str]
    out: TextIO
    browsers: dict[str, Browser] = field(default_factory=dict)
    dac_token: str = ""
    grant_id: str = ""

    def browser(self, username: str) -> Browser:
        if username not in self.browsers:
            self.browsers[username] = Browser(self.base)
        return self.browsers[username]

    def environ(self) -> dict[str, str]:
        """The child commands' environment: their own config folder, no browser, no broker settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "XDG_CONFIG_HOME"))}
        env["XDG_CONFIG_HOME"] = str(self.scratch / "config")
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        return env

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ga4gh-broker ARGS`` in a child process, as the terminal runs it."""
        try:
            return subprocess.run(
                [sys.executable, "-m", "broker", *args],
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                env=self.environ(),
                cwd=self.scratch,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"`ga4gh-broker {args[0]}` did not finish within {COMMAND_TIMEOUT} s") from None

    def access_token(self) -> str:
        """Alice's access token from the child commands' token file (for the raw 403 request)."""
        data = json.loads((self.scratch / "config" / "ga4gh-broker" / "credentials.json").read_text())
        for login in data.get("brokers", {}).values():
            if str(login.get("broker", "")).rstrip("/") == self.base:
                return str(login["access_token"])
        raise StepFailed("the token file holds no login for this broker")

    def check_downloads(self, names: list[str]) -> None:
        for name in names:
            path = self.scratch / "downloads" / name.split("/", 1)[1]
            if not path.exists():
                raise StepFailed(f"{name} was not written")
            if sha256_of(path) != self.checksums.get(name):
                raise StepFailed(f"{name}: sha-256 differs from data/SHA256SUMS")


def _last_line(text: str) -> str:
    """What a failed command said, in one line: its first lines (the reasons come before the summary)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[:4])[:500] if lines else "(no output)"


# --------------------------------------------------------------------------- the steps


def step_reachable(s: Session) -> str:
    try:
        ready = requests.get(s.base + "/readyz", timeout=TIMEOUT)
        discovery = requests.get(s.base + "/.well-known/openid-configuration", timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise StepFailed(f"no broker answers at {s.base} ({type(exc).__name__}); is the demo running?") from None
    if ready.status_code != 200:
        raise StepFailed(f"/readyz answered {ready.status_code}")
    issuer = str(discovery.json().get("issuer", "")) if discovery.status_code == 200 else ""
    if issuer.rstrip("/") != s.base:
        raise StepFailed(f"the broker at {s.base} names another issuer ({issuer or 'none'}); give its URL with --url")
    return f"{s.base} is ready"


def step_browser_login(s: Session) -> str:
    browser = s.browser("alice")
    page = browser.log_in_if_asked(browser.get("/account/visas"), "alice", s.passwords["alice"])
    if page.status_code != 200 or urlsplit(page.url).path != "/account/visas":
        raise StepFailed(f"after logging in, /account/visas answered {page.status_code} at {page.url}")
    if "ControlledAccessGrants" not in page.text or VCF_DATASET not in page.text:
        raise StepFailed(f"Alice's visas page does not show her ControlledAccessGrants visa for {VCF_DATASET}")
    return f"Alice sees her {VCF_DATASET} grant on /account/visas"


def step_terminal_login(s: Session) -> str:
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "login", "--broker", s.base + "/", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=s.environ(),
        cwd=s.scratch,
    )
    try:
        assert process.stdout is not None
        code = None
        deadline = time.monotonic() + TIMEOUT
        while code is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"enter the code: (\S+)", line)
            code = found.group(1) if found else None
        if code is None:
            raise StepFailed("`ga4gh-broker login` printed no code to enter")
        s.browser("alice").approve_device(code, "alice", s.passwords["alice"])
        _out, err = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    if process.returncode != 0:
        raise StepFailed(f"`ga4gh-broker login` exited {process.returncode}: {_last_line(err)}")
    return "`ga4gh-broker login` got tokens after the code was allowed in the browser"


def step_whoami(s: Session) -> str:
    done = s.command("whoami")
    if done.returncode != 0 or s.subs["alice"] not in done.stdout:
        raise StepFailed(
            f"`ga4gh-broker whoami` exited {done.returncode} without Alice's sub: {_last_line(done.stderr)}"
        )
    return "`ga4gh-broker whoami` names Alice"


def step_download(s: Session) -> str:
    names = [f"{VCF_DATASET}/demo.vcf.gz", f"{VCF_DATASET}/demo.vcf.gz.tbi"]
    done = s.command("download", *names, "--purpose", PURPOSE, "-o", "downloads")
    if done.returncode != 0:
        raise StepFailed(f"`ga4gh-broker download` exited {done.returncode}: {_last_line(done.stderr)}")
    s.check_downloads(names)
    return f"{VCF_DATASET} downloaded with purpose {PURPOSE}, checksums as in data/SHA256SUMS"


def step_dac_login(s: Session) -> str:
    device = requests.post(
        s.base + "/device_authorization", data={"client_id": CLIENT_ID, "scope": "openid dac"}, timeout=TIMEOUT
    )
    if device.status_code != 200:
        raise StepFailed(f"/device_authorization answered {device.status_code}: {device.text[:200]}")
    started = device.json()
    s.browser("dora").approve_device(str(started["user_code"]), "dora", s.passwords["dora"])
    form = {"grant_type": DEVICE_GRANT, "device_code": str(started["device_code"]), "client_id": CLIENT_ID}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = requests.post(s.base + "/token", data=form, timeout=TIMEOUT)
        body = answer.json()
        if answer.status_code == 200:
            s.dac_token = str(body["access_token"])
            break
        if body.get("error") not in ("authorization_pending", "slow_down"):
            raise StepFailed(f"the token endpoint refused Dora's device code: {body.get('error')}")
        time.sleep(int(started.get("interval", 2)) + (5 if body.get("error") == "slow_down" else 0))
    else:
        raise StepFailed("Dora's device login was not completed within 60 s")
    reset = 0
    for grant in _dac(s, "GET", f"/grants?dataset={BAM_DATASET}&identity={s.subs['alice']}&live=true", None, 200):
        _dac(s, "POST", f"/grants/{grant['id']}/revoke", {"reason": "demo --check: start from the demo's state"}, 200)
        reset += 1
    return f"Dora holds a token with the dac scope (earlier {BAM_DATASET} grants of Alice revoked: {reset})"


def _dac(s: Session, method: str, path: str, body: dict[str, Any] | None, expect: int) -> Any:
    answer = requests.request(
        method,
        s.base + "/api/dac" + path,
        json=body,
        headers={"Authorization": f"Bearer {s.dac_token}"},
        timeout=TIMEOUT,
    )
    if answer.status_code != expect:
        raise StepFailed(f"{method} /api/dac{path} answered {answer.status_code}: {answer.text[:200]}")
    return answer.json()


def step_refused(s: Session) -> str:
    done = s.command("download", f"{BAM_DATASET}/demo.bam", "-o", "downloads")
    if done.returncode == 0 or "403" not in done.stderr or "ControlledAccessGrants" not in done.stderr:
        raise StepFailed(
            f"`ga4gh-broker download {BAM_DATASET}/demo.bam` should be refused with what to apply for; "
            f"it exited {done.returncode}: {_last_line(done.stderr)}"
        )
    raw = requests.get(
        f"{s.base}/data/{BAM_DATASET}/demo.bam",
        headers={"Authorization": f"Bearer {s.access_token()}"},
        timeout=TIMEOUT,
    )
    required = (
        raw.json().get("required") if raw.headers.get("Content-Type", "").startswith("application/json") else None
    )
    if raw.status_code != 403 or not isinstance(required, dict) or required.get("dataset") != BAM_DATASET:
        raise StepFailed(
            f"GET /data/{BAM_DATASET}/demo.bam answered {raw.status_code} without a required-visas document"
        )
    return f"{BAM_DATASET} refused: 403 with the required-visas document"


def step_grant(s: Session) -> str:
    grant = _dac(
        s,
        "POST",
        "/grants",
        {
            "identity": s.subs["alice"],
            "dataset": BAM_DATASET,
            "end": int(time.time()) + 86400,
            "reason": "demo --check: approved",
        },
        201,
    )
    s.grant_id = str(grant["id"])
    return f"Dora granted Alice {BAM_DATASET} (POST /api/dac/grants)"


def step_download_again(s: Session) -> str:
    names = [f"{BAM_DATASET}/demo.bam", f"{BAM_DATASET}/demo.bam.bai"]
    done = s.command("download", *names, "-o", "downloads")
    if done.returncode != 0:
        raise StepFailed(f"`ga4gh-broker download` exited {done.returncode}: {_last_line(done.stderr)}")
    s.check_downloads(names)
    return f"{BAM_DATASET} downloaded after the grant, checksums as in data/SHA256SUMS"


def step_clean_up(s: Session) -> str:
    _dac(s, "POST", f"/grants/{s.grant_id}/revoke", {"reason": "demo --check: back to the demo's state"}, 200)
    return f"the {BAM_DATASET} grant is revoked again"


STEPS: tuple[tuple[str, Callable[[Session], str]], ...] = (
    ("broker reachable", step_reachable),
    ("browser login", step_browser_login),
    ("terminal login", step_terminal_login),
    ("whoami", step_whoami),
    ("download", step_download),
    ("DAC chair login", step_dac_login),
    ("403 with required visas", step_refused),
    ("grant through the DAC API", step_grant),
    ("download again", step_download_again),
    ("clean up", step_clean_up),
)


def _checksums(folder: Path) -> dict[str, str]:
    sums = folder / "data" / "SHA256SUMS"
    out: dict[str, str] = {}
    for line in sums.read_text(encoding="ascii").splitlines():
        sha, _, name = line.partition("  ")
        out[name] = sha
    return out


def run_check(folder: Path, url: str | None, out: TextIO) -> int:
    """Run :data:`STEPS` against the demo of ``folder`` at ``url`` (default: its last port); 0 or 1."""
    state = read_state(folder)
    base = (url or f"http://127.0.0.1:{state['port']}").rstrip("/")
    with tempfile.TemporaryDirectory(prefix="ga4gh-broker-demo-check-") as scratch:
        session = Session(
            base=base,
            folder=folder,
            scratch=Path(scratch),
            subs={str(k): str(v) for k, v in state["subs"].items()},
            passwords=read_passwords(folder),
            checksums=_checksums(folder),
            out=out,
        )
        for number, (name, step) in enumerate(STEPS, 1):
            try:
                said = step(session)
            except StepFailed as exc:
                print(f"FAILED step {number} ({name}): {exc}", file=out, flush=True)
                return 1
            except (requests.RequestException, ValueError, KeyError, OSError) as exc:
                print(f"FAILED step {number} ({name}): {type(exc).__name__}: {str(exc)[:300]}", file=out, flush=True)
                return 1
            print(f"ok   step {number} ({name}): {said}", file=out, flush=True)
    print(f"demo check passed: {len(STEPS)} steps against {base}", file=out, flush=True)
    return 0
