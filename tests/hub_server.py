"""A Hub on 127.0.0.1 that speaks the part of the Hub's HTTP API that huggingface_hub uses to publish.

No installable server implements the Hub's upload API (olah serves downloads only), so this one is small and exact
about what the stock client sends: whoami-v2, repos/create, branch, validate-yaml (the README's front matter,
with the Hub's Space rules such as the 60-character short_description), preupload, commit (NDJSON) and repo info. Every
file travels inline ("regular" upload mode), and the preupload answer carries each existing file's git blob id, so
the client skips files that did not change, as it does against the real Hub. Commits are recorded for the tests
to assert on; `fail` answers a chosen request with an HTTP error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Repo:
    repo_type: str  # "model" or "space"
    repo_id: str
    private: bool
    sdk: str | None = None
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})


@dataclass
class Commit:
    repo_type: str
    repo_id: str
    revision: str
    summary: str
    files: dict[str, bytes]  # what this commit added or changed


class HubServer:
    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None,
                 read_only: set[str] | None = None):
        self.tokens = tokens or {"hf_alice_write": "alice"}  # token -> user name
        self.read_only = read_only or set()  # tokens whose role is "read": whoami answers, writes get a 403
        self.orgs = orgs or {}  # user name -> organizations the user may write to
        self.repos: dict[tuple[str, str], Repo] = {}
        self.commits: list[Commit] = []
        self.requests: list[tuple[str, str]] = []
        self.validated: list[tuple[str, bool]] = []  # (repo type, accepted) of each README the client had checked
        self.fail: dict[tuple[str, str], int] = {}  # (action, repo_id) -> HTTP status, e.g. ("commit", "a/b"): 500
        self.repo_info_answer = None  # set: what every repo's info is answered with (a broken or hostile server)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)].branches[revision])

    # --- the HTTP side ---------------------------------------------------------------------------------------------

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload=None, headers: dict | None = None):
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _token(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None

            def _user(self) -> str | None:
                return hub.tokens.get(self._token())

            def do_HEAD(self):
                hub.requests.append(("HEAD", self.path))
                self._send(404)

            def do_GET(self):
                body = self._body()
                del body
                path = urlparse(self.path).path
                hub.requests.append(("GET", path))
                if path == "/api/whoami-v2":
                    user = self._user()
                    if user is None:
                        return self._send(401, {"error": "Invalid credentials in Authorization header"})
                    return self._send(200, {"type": "user", "name": user,
                                            "orgs": [{"name": o} for o in hub.orgs.get(user, [])],
                                            "auth": {"type": "access_token",
                                                     "accessToken": {"displayName": "test", "role": (
                                                         "read" if self._token() in hub.read_only else "write")}}})
                match = re.fullmatch(r"/api/(models|spaces)/([^/]+/[^/]+)(?:/revision/(.+))?", path)
                if match:
                    return self._repo_info(match[1][:-1], match[2], unquote(match[3] or "main"))
                self._send(404, {"error": "not found"})

            def _repo_info(self, repo_type, repo_id, revision):
                repo = hub.repos.get((repo_type, repo_id))
                if repo is None:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                if revision not in repo.branches:
                    return self._send(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
                if hub.repo_info_answer is not None:
                    return self._send(200, hub.repo_info_answer)
                return self._send(200, {"id": repo_id, "sha": repo.heads[revision], "private": repo.private,
                                        "siblings": [{"rfilename": p} for p in sorted(repo.branches[revision])]})

            def do_POST(self):
                body = self._body()
                path = urlparse(self.path).path
                hub.requests.append(("POST", path))
                user = self._user()
                if user is None:
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                if path == "/api/repos/create":
                    return self._create(user, json.loads(body))
                if path == "/api/validate-yaml":
                    return self._validate_yaml(json.loads(body))
                match = re.fullmatch(r"/api/(models|spaces)/([^/]+/[^/]+)/(branch|preupload|commit)/(.+)", path)
                if not match:
                    return self._send(404, {"error": "not found"})
                repo_type, repo_id, action, revision = match[1][:-1], match[2], match[3], unquote(match[4])
                if (status := hub.fail.get((action, repo_id))) is not None:
                    return self._send(status, {"error": f"simulated {status} on {action}"})
                repo = hub.repos.get((repo_type, repo_id))
                if repo is None:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                if not self._may_write(user, repo_id):
                    return self._send(403, {"error": f"You don't have the rights to write to {repo_id}"})
                if action == "branch":
                    if revision in repo.branches:
                        return self._send(409, {"error": "Reference already exists"})
                    with hub._lock:
                        repo.branches[revision] = dict(repo.branches["main"])
                        repo.heads[revision] = repo.heads["main"]
                    return self._send(200, {})
                if revision not in repo.branches:
                    return self._send(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
                if action == "preupload":
                    current = repo.branches[revision]
                    return self._send(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                         "oid": git_blob_id(current[f["path"]]) if f["path"] in current else None}
                        for f in json.loads(body)["files"]]})
                return self._commit(repo, revision, body)

            def _validate_yaml(self, payload):
                """The Hub's check of a README's front matter, for the rules a Space README has broken before."""
                import yaml

                match = re.match(r"^---\n(.*?)\n---", payload["content"], flags=re.S)
                try:
                    data = yaml.safe_load(match[1]) if match else {}
                except yaml.YAMLError as error:
                    return self._send(400, {"errors": [{"message": f"invalid YAML: {error}"}]})
                errors = []
                if not isinstance(data, dict):
                    errors.append("metadata must be a mapping")
                elif payload.get("repoType") == "space":
                    if len(str(data.get("short_description", ""))) > 60:
                        errors.append('"short_description" length must be less than or equal to 60 characters long')
                    for key in ("colorFrom", "colorTo"):
                        if key in data and data[key] not in ("red", "yellow", "green", "blue", "indigo", "purple",
                                                             "pink", "gray"):
                            errors.append(f'"{key}" must be one of [red, yellow, green, blue, indigo, purple, pink, gray]')
                    if data.get("sdk") not in ("gradio", "docker", "static", "streamlit"):
                        errors.append('"sdk" must be one of [gradio, docker, static, streamlit]')
                hub.validated.append((payload.get("repoType"), not errors))
                if errors:
                    return self._send(400, {"errors": [{"message": m} for m in errors]})
                return self._send(200, {"errors": [], "warnings": []})

            def _may_write(self, user: str, repo_id: str) -> bool:
                return self._token() not in hub.read_only and repo_id.split("/")[0] in (user, *hub.orgs.get(user, []))

            def _create(self, user, payload):
                namespace = payload.get("organization") or user
                repo_id, repo_type = f"{namespace}/{payload['name']}", payload.get("type") or "model"
                if (status := hub.fail.get(("create", repo_id))) is not None:
                    return self._send(status, {"error": f"simulated {status} on create"})
                if not self._may_write(user, repo_id):
                    return self._send(403, {"error": f"You don't have the rights to create {repo_id}"})
                prefix = "spaces/" if repo_type == "space" else ""
                with hub._lock:
                    if (repo_type, repo_id) in hub.repos:
                        return self._send(409, {"error": "You already created this repo", "url": f"{hub.url}/{prefix}{repo_id}"})
                    hub.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, payload.get("visibility") == "private",
                                                           payload.get("sdk"))
                return self._send(200, {"url": f"{hub.url}/{prefix}{repo_id}"})

            def _commit(self, repo: Repo, revision: str, body: bytes):
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                added = {}
                for line in lines:
                    if line["key"] == "file":
                        value = line["value"]
                        assert value.get("encoding") == "base64", value
                        added[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] != "header":
                        return self._send(400, {"error": f"this test Hub takes inline files only, not {line['key']}"})
                with hub._lock:
                    repo.branches[revision].update(added)
                    sha = hashlib.sha1(json.dumps([repo.heads[revision], sorted((p, git_blob_id(c)) for p, c in added.items())]).encode()).hexdigest()
                    repo.heads[revision] = sha
                    hub.commits.append(Commit(repo.repo_type, repo.repo_id, revision, header.get("summary", ""), added))
                prefix = "spaces/" if repo.repo_type == "space" else ""
                return self._send(200, {"commitUrl": f"{hub.url}/{prefix}{repo.repo_id}/commit/{sha}", "commitOid": sha})

        return Handler
