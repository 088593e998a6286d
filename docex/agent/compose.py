"""Moved to :mod:`docex.documents.compose` (DESIGN: documents/); kept for old imports."""

from docex.documents.compose import ComposeError, DocumentMeta, chinese_date, compose

__all__ = ["ComposeError", "DocumentMeta", "chinese_date", "compose"]
