"""Jobs from the web and the API, without a worker (tests/test_jobs_worker.py runs them), on
SQLite and PostgreSQL: only admins queue and cancel (401 anonymous, 403 users); bad requests
(unknown kind, unknown field, bad numbers, missing server path) and malicious zips (path
traversal, absolute paths, symlinks, zip bombs, not a zip, too large) are refused in words and
leave no job and no file behind; /jobs and its twin show jobs with user text escaped."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from latentpedia.store.api import Store
from latentpedia.web.app import create_app
from tests.community_fixtures import CommunityAtlas, community_atlas
from tests.conftest import BACKENDS
from tests.sae_builders import random_sae, write_saelens
from tests.tiny import D_MODEL
from tests.web_atlas import PAYLOAD


@pytest.fixture(scope="module", params=BACKENDS)
def atlas(request, tmp_path_factory) -> Iterator[CommunityAtlas]:
    with community_atlas(request.param, request, tmp_path_factory) as community:
        yield community


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def client(atlas) -> Iterator[TestClient]:
    with TestClient(create_app(atlas.url, private=False)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def sae_zip(tmp_path_factory) -> bytes:
    """A SAELens folder for the tiny model, zipped with its folder name."""
    folder = write_saelens(tmp_path_factory.mktemp("sae") / "res-topk", random_sae("topk", d_in=D_MODEL, d_sae=48, k=4, seed=5),
                           hook_name="blocks.2.hook_resid_post")  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"res-topk/{path.name}")
    return buffer.getvalue()


def n_jobs(atlas: CommunityAtlas) -> int:
    store = Store.open(atlas.url)
    try:
        return len(store.list_jobs(limit=10**6))
    finally:
        store.close()


def build_body(atlas: CommunityAtlas, **extra) -> dict:
    return {"kind": "build", "model": atlas.model, "sources": ["2-mlp"], "tokens": 1000, "window": 32, **extra}


def test_only_admins_queue_jobs(client, atlas):
    before = n_jobs(atlas)
    assert client.post("/api/jobs", json=build_body(atlas)).status_code == 401
    refused = client.post("/api/jobs", json=build_body(atlas), headers=atlas.key("alice"))
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    assert n_jobs(atlas) == before
    made = client.post("/api/jobs", json=build_body(atlas), headers=atlas.key("root"))
    assert made.status_code == 201, made.text
    job = made.json()
    assert job["status"] == "queued" and job["queued"] and not job["finished"] and job["kind"] == "build"
    assert job["params"]["sources"] == ["2-mlp"] and job["target"] == f"{atlas.model}: 2-mlp"
    assert n_jobs(atlas) == before + 1


@pytest.mark.parametrize("body, status, words", [
    ({"kind": "teleport", "model": "m"}, 422, "teleport"),
    ({"model": "m", "sources": ["1-mlp"]}, 422, "kind"),
    ({"kind": "build", "sources": ["1-mlp"], "rm_rf": True}, 422, "rm_rf"),
    ({"kind": "build", "sources": []}, 422, "sources"),
    ({"kind": "build", "sources": ["1-mlp"], "tokens": 0}, 422, "tokens"),
    ({"kind": "build", "sources": ["1-mlp"], "window": 10**9}, 422, "window"),
    ({"kind": "score", "scorers": []}, 422, "scorers"),
    ({"kind": "explain", "scorers": ["astrology"]}, 422, "scorers"),
    ({"kind": "train-sae", "hooks": ["blocks.1.hook_resid_post"], "architecture": "magic"}, 422, "architecture"),
    ({"kind": "import-sae", "path": "/no/such/sae/folder"}, 400, "/no/such/sae/folder"),
])  # fmt: skip
def test_bad_job_requests_are_refused_in_words_and_queue_nothing(client, atlas, body, status, words):
    before = n_jobs(atlas)
    response = client.post("/api/jobs", json=body, headers=atlas.key("root"))
    assert response.status_code == status, response.text
    assert words in str(response.json()["detail"])
    assert n_jobs(atlas) == before


def test_reading_jobs_hides_requests_from_non_admins(client, atlas):
    job = client.post("/api/jobs", json=build_body(atlas), headers=atlas.key("root")).json()
    for who, sees in ((None, False), ("alice", False), ("root", True)):
        headers = atlas.key(who) if who else {}
        one = client.get(f"/api/jobs/{job['id']}", headers=headers)
        assert one.status_code == 200 and (one.json()["params"] is not None) is sees
        listed = {j["id"]: j for j in client.get("/api/jobs", headers=headers).json()["jobs"]}
        assert job["id"] in listed and listed[job["id"]]["status"] == "queued"
    assert client.get("/api/jobs/987654").status_code == 404


def test_events_poll_the_log_after_since(client, atlas):
    job = client.post("/api/jobs", json=build_body(atlas), headers=atlas.key("root")).json()
    store = Store.open(atlas.url)
    store.report_job_progress(job["id"], stage="forward pass", done=10, total=40, unit="tokens", rate=5.0, eta_seconds=6.0,
                              progress=0.25, log=["one", "two", "three"])  # fmt: skip
    store.close()
    first = client.get(f"/api/jobs/{job['id']}/events").json()
    assert first["lines"] == ["one", "two", "three"] and first["next"] == 3 and first["eta"] == "6s" and first["poll_ms"] > 0
    assert first["done"] == 10 and first["total"] == 40 and first["progress"] == 0.25 and not first["finished"]
    later = client.get(f"/api/jobs/{job['id']}/events", params={"since": 2}).json()
    assert later["lines"] == ["three"]
    assert client.get(f"/api/jobs/{job['id']}/events", params={"since": -1}).status_code == 422


def test_cancel(client, atlas):
    job = client.post("/api/jobs", json=build_body(atlas), headers=atlas.key("root")).json()
    url = f"/api/jobs/{job['id']}/cancel"
    assert client.post(url).status_code == 401
    assert client.post(url, headers=atlas.key("alice")).status_code == 403
    cancelled = client.post(url, headers=atlas.key("root"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled" and cancelled.json()["finished"]
    again = client.post(url, headers=atlas.key("root"))
    assert again.status_code == 409 and "already finished" in again.json()["detail"]
    assert client.post("/api/jobs/987654/cancel", headers=atlas.key("root")).status_code == 404
    store = Store.open(atlas.url)
    cli_job = store.start_job("build", "from the command line", heartbeat_seconds=None)
    store.close()
    refused = client.post(f"/api/jobs/{cli_job}/cancel", headers=atlas.key("root"))
    assert refused.status_code == 409 and "command line" in refused.json()["detail"]


def upload(client, atlas, data: bytes, who: str = "root", **fields):
    files = {"file": ("sae.zip", data, "application/zip")}
    return client.post("/api/jobs/upload-sae", files=files, data={"model": atlas.model, "eval_tokens": "0", **fields},
                       headers=atlas.key(who) if who else {})  # fmt: skip


def test_an_uploaded_zip_is_unpacked_under_the_data_dir_and_queued(client, atlas, sae_zip, home):
    assert upload(client, atlas, sae_zip, who="").status_code == 401
    assert upload(client, atlas, sae_zip, who="alice").status_code == 403
    response = upload(client, atlas, sae_zip, name="2-res-up")
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["kind"] == "import-sae" and job["params"]["name"] == "2-res-up" and job["params"]["eval_tokens"] == 0
    folder = Path(job["params"]["path"])
    assert folder.is_relative_to(home / "uploads") and folder.name == "res-topk"
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors", "sparsity.safetensors"]
    assert not list((home / "uploads").glob("*.zip"))


def _zip(members: list[tuple[str, bytes]], *, symlink: str | None = None, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


MALICIOUS = {
    "traversal": (_zip([("res/cfg.json", b"{}"), ("../../escaped.txt", b"owned")]), "unsafe path"),
    "absolute": (_zip([("/tmp/latentpedia-absolute.txt", b"owned")]), "unsafe path"),
    "backslashes": (_zip([("..\\..\\escaped.txt", b"owned")]), "unsafe path"),
    "symlink": (_zip([("res/cfg.json", b"{}")], symlink="res/sae_weights.safetensors"), "symbolic link"),
    "bomb": (_zip([("res/sae_weights.safetensors", bytes(64 * 1024 * 1024))]), "zip bomb"),
    "not a zip": (b"PK\x03\x04 but not really a zip file at all", "not a zip"),
    "empty": (_zip([]), "no file"),
}


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_malicious_zips_are_refused_and_leave_nothing(client, atlas, home, tmp_path, case):
    data, words = MALICIOUS[case]
    before = n_jobs(atlas)
    response = upload(client, atlas, data)
    assert response.status_code == 400, response.text
    assert words in response.json()["detail"]
    assert n_jobs(atlas) == before
    assert not any((home / "uploads").rglob("*")), "nothing left in the uploads folder"
    assert not (home.parent / "escaped.txt").exists() and not Path("/tmp/latentpedia-absolute.txt").exists()


def test_too_large_an_upload_is_refused(client, atlas, home, sae_zip, monkeypatch):
    monkeypatch.setenv("LATENTPEDIA_MAX_UPLOAD_BYTES", str(len(sae_zip) - 1))
    before = n_jobs(atlas)
    response = upload(client, atlas, sae_zip)
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    assert n_jobs(atlas) == before and not any((home / "uploads").rglob("*"))


def test_jobs_page_shows_forms_to_admins_and_escapes_text(client, atlas):
    store = Store.open(atlas.url)
    job_id = store.enqueue_job("build", f"target {PAYLOAD}", {"kind": "build"})
    store.report_job_progress(job_id, log=[f"a log line {PAYLOAD}"])
    store.close()
    for who, forms in ((None, False), ("alice", False), ("root", True)):
        page = client.get("/jobs", headers={"accept": "text/html", **(atlas.key(who) if who else {})})
        assert page.status_code == 200 and page.headers["link"].startswith("</api/jobs>")
        assert PAYLOAD not in page.text and "target &lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "a log line &lt;script&gt;" in page.text
        assert ('id="job-upload-sae"' in page.text) is forms
    twin = client.get("/api/jobs").json()
    assert any(j["target"] == f"target {PAYLOAD}" for j in twin["jobs"]) and "build" in twin["kinds"]
