"""Fraud rings for investigators: list, detail, decisions."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/rings", tags=["rings"])
