"""Jobs from the web: `/jobs` (live progress, forms for admins) and `/api/jobs`.

Admins (a session, or `x-api-key` of an admin) queue builds, SAE imports (a server path, or a zip
uploaded to `/api/jobs/upload-sae`, checked before anything is queued: jobs/uploads.py), SAE
training, explain and score runs; `latentpedia worker` (started by `serve`) runs them. Anyone who
may read the atlas sees the jobs (requests and tracebacks only for admins).

Progress is polled (`GET /api/jobs/{id}/events?since=N`), not streamed: the worker writes progress
to the store about once a second, so a poll every 1.5 s shows everything; a poll is one short
request through any proxy, holds no connection or thread-pool thread while waiting (server-sent
events would hold one per watcher on a 2-core server), and resumes without special handling after
a restart of the server or a network blip.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from latentpedia.config import DEFAULT_MODEL_ID
from latentpedia.errors import InvalidInputError
from latentpedia.jobs.kinds import JOB_KINDS, ImportSaeJob, JobRequest
from latentpedia.jobs.uploads import UploadTooLargeError, max_upload_bytes, new_upload_dir, unpack_sae_zip
from latentpedia.store.api import Store
from latentpedia.store.jobs import FINISHED
from latentpedia.web.auth import AdminUser, OptionalUser
from latentpedia.web.deps import StoreDep
from latentpedia.web.job_schemas import JobEvents, JobOut, JobsPage, job_events, job_out
from latentpedia.web.render import render_page
from latentpedia.web.schemas import ErrorBody

router = APIRouter(tags=["jobs"])
WRITE_ERRORS = {
    400: {"model": ErrorBody, "description": "a request the worker could not run (unknown path, bad zip)"},
    401: {"model": ErrorBody, "description": "not signed in"},
    403: {"model": ErrorBody, "description": "jobs are for admins"},
    413: {"model": ErrorBody, "description": "the upload is too large"},
}
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such job"}}
LIST_LIMIT = 50


def _is_admin(user) -> bool:
    return bool(user is not None and user.is_admin)


def jobs_page_data(store: Store, admin: bool) -> JobsPage:
    queued = {q.job.id: q for q in store.list_queued_jobs(limit=LIST_LIMIT)}
    jobs = [job_out(job, queued.get(job.id), admin=admin) for job in store.list_jobs(limit=LIST_LIMIT)]
    sources: dict[str, list[str]] = {}
    for source in store.list_sources():
        if source.status == "ready":
            sources.setdefault(source.model_id, []).append(source.name)
    models = [m.id for m in store.list_models()] or [DEFAULT_MODEL_ID]
    return JobsPage(jobs=jobs, kinds=list(JOB_KINDS), is_admin=admin, models=models, sources=sources)


def _one(store: Store, job_id: int, admin: bool) -> JobOut:
    job = store.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job_out(job, store.get_queued_job(job_id), admin=admin)


@router.get("/api/jobs", response_model=JobsPage, summary="The newest jobs, with their progress")
def list_jobs(store: StoreDep, user: OptionalUser) -> JobsPage:
    return jobs_page_data(store, _is_admin(user))


@router.get("/jobs", response_class=HTMLResponse, include_in_schema=False)
def jobs_html(request: Request, store: StoreDep, user: OptionalUser) -> HTMLResponse:
    return render_page(request, "jobs.html", jobs_page_data(store, _is_admin(user)), "/api/jobs")


@router.post("/api/jobs", response_model=JobOut, status_code=201, responses=WRITE_ERRORS, summary="Queue a job (admins)")
def create_job(body: JobRequest, store: StoreDep, user: AdminUser) -> JobOut:
    if isinstance(body, ImportSaeJob) and not Path(body.path).exists():
        raise HTTPException(400, f"no file or folder {body.path!r} on the server")
    job_id = store.enqueue_job(body.kind, body.target(), body.model_dump(), requested_by=user.id)
    return _one(store, job_id, True)


@router.post("/api/jobs/upload-sae", response_model=JobOut, status_code=201, responses=WRITE_ERRORS,
             summary="Upload an SAE folder as a zip and queue its import (admins)")  # fmt: skip
async def upload_sae(
    request: Request,
    user: AdminUser,
    file: Annotated[UploadFile, File(description="a zip of one SAE folder (any supported format)")],
    model: Annotated[str, Form(min_length=1, max_length=300)] = DEFAULT_MODEL_ID,
    name: Annotated[str | None, Form(max_length=200)] = None,
    hook: Annotated[str | None, Form(max_length=200)] = None,
    eval_tokens: Annotated[int, Form(ge=0, le=1_000_000)] = 8192,
) -> JobOut:
    store: Store = request.app.state.store
    folder = await run_in_threadpool(new_upload_dir)
    try:
        zip_path = folder.with_suffix(".zip")
        await _save_upload(file, zip_path)
        sae = await run_in_threadpool(unpack_sae_zip, zip_path, folder)
        zip_path.unlink(missing_ok=True)
        job = ImportSaeJob(model=model, path=str(sae), name=name or None, hook=hook or None, eval_tokens=eval_tokens)
    except InvalidInputError as err:
        folder.with_suffix(".zip").unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(413 if isinstance(err, UploadTooLargeError) else 400, str(err)) from None
    except BaseException:
        folder.with_suffix(".zip").unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    job_id = await run_in_threadpool(store.enqueue_job, job.kind, job.target(), job.model_dump(), requested_by=user.id)
    return await run_in_threadpool(_one, store, job_id, True)


async def _save_upload(file: UploadFile, target: Path) -> None:
    """Copy the upload to `target`, refusing it past the size limit."""
    limit, size = max_upload_bytes(), 0
    with open(target, "wb") as out:
        while chunk := await file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise UploadTooLargeError(f"the upload is too large: more than {limit:,} bytes")
            out.write(chunk)


@router.get("/api/jobs/{job_id}", response_model=JobOut, responses=NOT_FOUND, summary="One job, with its progress")
def get_job(job_id: int, store: StoreDep, user: OptionalUser) -> JobOut:
    return _one(store, job_id, _is_admin(user))


@router.get("/api/jobs/{job_id}/events", response_model=JobEvents, responses=NOT_FOUND,
            summary="Poll a job: its state and the log lines after `since`")  # fmt: skip
def job_events_route(job_id: int, store: StoreDep, user: OptionalUser,
                     since: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> JobEvents:  # fmt: skip
    return job_events(_one(store, job_id, _is_admin(user)), since)


@router.post("/api/jobs/{job_id}/cancel", response_model=JobOut, summary="Cancel a job (admins)",
             responses={**WRITE_ERRORS, **NOT_FOUND, 409: {"model": ErrorBody, "description": "the job has finished"}})  # fmt: skip
def cancel_job(job_id: int, store: StoreDep, user: AdminUser) -> JobOut:
    current = _one(store, job_id, True)
    if not current.queued:
        raise HTTPException(409, f"job {job_id} was started from the command line; stop that process instead")
    if current.finished or current.status in FINISHED:
        raise HTTPException(409, f"job {job_id} has already finished ({current.status})")
    store.cancel_job(job_id)
    return _one(store, job_id, True)
