"""FastAPI dependencies as Annotated aliases: routes declare what they need, the container provides it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.config import Settings
from backend.container import Container
from backend.services.answering import AnswerService
from backend.services.ingest import IngestService
from backend.services.retrieval import RetrievalService
from backend.services.status import StatusService


def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


ContainerDep = Annotated[Container, Depends(get_container)]


def get_settings(c: ContainerDep) -> Settings:
    return c.settings


def get_ingest(c: ContainerDep) -> IngestService:
    return c.ingest


def get_retrieval(c: ContainerDep) -> RetrievalService:
    return c.retrieval


def get_answers(c: ContainerDep) -> AnswerService:
    return c.answers


def get_status(c: ContainerDep) -> StatusService:
    return c.status


SettingsDep = Annotated[Settings, Depends(get_settings)]
IngestDep = Annotated[IngestService, Depends(get_ingest)]
RetrievalDep = Annotated[RetrievalService, Depends(get_retrieval)]
AnswerDep = Annotated[AnswerService, Depends(get_answers)]
StatusDep = Annotated[StatusService, Depends(get_status)]
