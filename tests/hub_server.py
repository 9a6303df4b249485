"""A stand-in for the Hugging Face Hub on 127.0.0.1: the HTTP routes that huggingface_hub uses to create a repo,
commit files and download them, with repos kept in memory. Uploads are always "regular" (no LFS, no Xet).

Set HF_ENDPOINT to `MockHub.endpoint` before huggingface_hub is imported: it reads the endpoint once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

USER = "tester"
TOKEN = "hf_mock_write_token"


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


class MockHub:
    """`repos` maps repo ids to their files; `refuse_commits` makes every commit answer 403; `requests` logs routes."""

    def __init__(self, port: int):
        self.endpoint = f"http://127.0.0.1:{port}"
        self.repos: dict[str, Repo] = {}
        self.refuse_commits = False
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_GET(self):
                hub._handle(self, "GET")

            def do_POST(self):
                hub._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> MockHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # Routing ------------------------------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlsplit(request.path).path)
        self.requests.append(f"{method} {path}")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        authorized = request.headers.get("Authorization") == f"Bearer {TOKEN}"
        routes = [
            ("POST", r"/api/repos/create", self._create_repo, True),
            ("POST", r"/api/validate-yaml", lambda body: (200, {}, {}), False),
            ("GET", r"/api/whoami-v2", lambda body: (200, {"name": USER, "type": "user"}, {}), True),
            ("POST", r"/api/models/([^/]+/[^/]+)/preupload/[^/]+", self._preupload, True),
            ("POST", r"/api/models/([^/]+/[^/]+)/commit/[^/]+", self._commit, True),
            ("GET", r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", self._model_info, False),
            (None, r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", self._resolve, False),
        ]
        for route_method, pattern, handler, needs_token in routes:
            match = re.fullmatch(pattern, path)
            if match and route_method in (None, method):
                if needs_token and not authorized:
                    return self._reply(request, 401, {"error": "Invalid credentials in Authorization header"})
                arguments = match.groups() + ((method,) if route_method is None else ())
                status, payload, headers = handler(*arguments, body)
                return self._reply(request, status, payload, headers, method)
        self._reply(request, 404, {"error": f"no route {method} {path}"})

    def _reply(self, request, status: int, payload, headers: dict | None = None, method: str = "GET") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(data)

    # Endpoints ----------------------------------------------------------------------------------------------
    def _create_repo(self, body: bytes):
        request = json.loads(body)
        repo_id = f"{request.get('organization') or USER}/{request['name']}"
        self.repos.setdefault(repo_id, Repo())
        return 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}, {}

    def _missing_repo(self, repo_id: str):
        return 404, {"error": f"Repository {repo_id} not found"}, {"X-Error-Code": "RepoNotFound"}

    def _preupload(self, repo_id: str, body: bytes):
        if repo_id not in self.repos:
            return self._missing_repo(repo_id)
        files = json.loads(body)["files"]
        return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}, {}

    def _commit(self, repo_id: str, body: bytes):
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._missing_repo(repo_id)
        if self.refuse_commits:
            return 403, {"error": "You don't have the rights to create a commit in this repo"}, {}
        files = dict(repo.files)
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            elif key != "header":
                return 400, {"error": f"this stand-in only accepts regular uploads, got {key!r}"}, {}
        repo.files = files
        repo.commits.append(hashlib.sha1(f"{repo_id}{len(repo.commits)}{sorted(files)}".encode()).hexdigest())
        return (
            200,
            {
                "commitUrl": f"{self.endpoint}/{repo_id}/commit/{repo.sha}",
                "commitOid": repo.sha,
                "pullRequestUrl": None,
            },
            {},
        )

    def _model_info(self, repo_id: str, body: bytes):
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._missing_repo(repo_id)
        siblings = [{"rfilename": name} for name in sorted(repo.files)]
        return 200, {"id": repo_id, "sha": repo.sha, "siblings": siblings, "private": False, "tags": []}, {}

    def _resolve(self, repo_id: str, filename: str, method: str, body: bytes):
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._missing_repo(repo_id)
        headers = {"X-Repo-Commit": repo.sha}
        if filename not in repo.files:
            return 404, {"error": "Entry not found"}, {**headers, "X-Error-Code": "EntryNotFound"}
        content = repo.files[filename]
        return (
            200,
            content,
            {**headers, "ETag": f'"{git_blob_sha(content)}"', "Content-Type": "application/octet-stream"},
        )
