"""How an upload is kept: encrypted 1 MiB chunks, each under its own context, decrypted
back into a private temporary file when a run reads it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.connectors.models import IngestionFile, IngestionFileChunk
from recova.platform.kernel.crypto import PersonalDataCipher

FILE_CHUNK_BYTES = 1024 * 1024


def chunk_context(file_id: int, seq: int) -> str:
    """The encryption context of one chunk: a chunk cannot be moved to another place."""
    return f"ingestion_file:{file_id}:{seq}"


def spool_file(
    session: Session, cipher: PersonalDataCipher, record: IngestionFile, path: Path
) -> None:
    """Decrypt a stored file into ``path`` (a private temporary file) for a connector."""
    statement = (
        select(IngestionFileChunk.seq, IngestionFileChunk.data)
        .where(IngestionFileChunk.file_id == record.id)
        .order_by(IngestionFileChunk.seq)
        .execution_options(yield_per=8)
    )
    with path.open("wb") as out:
        for seq, data in session.execute(statement):
            out.write(cipher.decrypt_bytes(data, context=chunk_context(record.id, seq)))
