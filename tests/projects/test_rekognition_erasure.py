"""Erasure with the Rekognition index (botocore Stubber): the faces of a deleted photo are
deleted from its project's collection, a deleted project's collection goes, and the calls made
are exactly those (Stubber fails on any other, and on any it expected but did not get)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mediaplane.consent.retention import expire_selfies
from mediaplane.faces.models import FaceMatch, PhotoFace, SelfieFace
from mediaplane.faces.rekognition import RekognitionIndex
from mediaplane.projects import service as projects
from mediaplane.projects.erasure import ProjectEraser, erase_photos
from mediaplane.runtime import Runtime
from mediaplane.storage import ObjectStore
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus
from tests.faces.test_rekognition import rekognition_client

PREFIX = "mp-test"
BOX = {"left": 1, "top": 2, "width": 30, "height": 40}


@pytest.fixture
def client() -> Any:
    return rekognition_client()


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def index(client: Any) -> RekognitionIndex:
    return RekognitionIndex(client, prefix=PREFIX)


def indexed_photo(
    session: Session, store: ObjectStore, *, project_id: uuid.UUID, face_ids: list[str]
) -> uuid.UUID:
    """An uploaded photo with its objects, faces indexed in Rekognition, and a match."""
    now = datetime.now(UTC)
    photo_id = uuid.uuid4()
    prefix = f"photos/{project_id}/{photo_id}"
    session.add(
        PendingUpload(
            id=photo_id,
            kind=UploadKind.PHOTO,
            owner_id="pat",
            project_id=project_id,
            key=f"{prefix}/original.jpg",
            content_type="image/jpeg",
            max_bytes=1 << 20,
            status=UploadStatus.UPLOADED,
            url_expires_at=now - timedelta(minutes=1),
            created_at=now,
            derivatives=["thumb-400"],
        )
    )
    session.flush()
    for name in ("original", "thumb-400"):
        store.put(f"{prefix}/{name}.jpg", io.BytesIO(b"\xff\xd8\xff"), content_type="image/jpeg")
    for face_id in face_ids:
        face = PhotoFace(
            id=uuid.uuid4(),
            photo_id=photo_id,
            project_id=project_id,
            box=BOX,
            quality=0.9,
            external_face_id=face_id,
        )
        session.add(face)
        session.flush()
    session.add(
        FaceMatch(
            photo_id=photo_id,
            user_id="obama",
            project_id=project_id,
            photo_face_id=face.id,
            box=BOX,
            similarity=99.0,
            created_at=now,
        )
    )
    session.flush()
    return photo_id


def faces_left(session: Session, project_id: uuid.UUID) -> tuple[int, int, int]:
    count = func.count()
    return (
        session.scalar(select(count).where(PhotoFace.project_id == project_id)) or 0,
        session.scalar(select(count).where(FaceMatch.project_id == project_id)) or 0,
        session.scalar(select(count).where(PendingUpload.project_id == project_id)) or 0,
    )


def test_photo_and_project_erasure_delete_their_rekognition_faces(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    store, db = runtime.store, runtime.database
    project = uuid.uuid4()
    collection = f"{PREFIX}-project-{project}"
    with db.transaction() as session:
        projects.create(
            session, name="Gala", owner_id="olga", now=datetime.now(UTC), project_id=project
        )
        first = indexed_photo(session, store, project_id=project, face_ids=["f-1", "f-2"])
        indexed_photo(session, store, project_id=project, face_ids=["f-3"])
        assert faces_left(session, project) == (3, 2, 2)
    assert len(list(store.list(f"photos/{project}/"))) == 4

    # One photo: DeleteFaces of its two faces, from its project's collection, and nothing else.
    stubber.add_response(
        "delete_faces",
        {"DeletedFaces": ["f-1", "f-2"], "UnsuccessfulFaceDeletions": []},
        {"CollectionId": collection, "FaceIds": ["f-1", "f-2"]},
    )
    with db.transaction() as session:
        erase_photos(session, store, index, photo_ids=[first], now=datetime.now(UTC))
    stubber.assert_no_pending_responses()
    with db.transaction() as session:
        assert faces_left(session, project) == (1, 1, 1)
    assert len(list(store.list(f"photos/{project}/"))) == 2

    # The project: DeleteFaces of the last photo, then DeleteCollection.
    stubber.add_response(
        "delete_faces",
        {"DeletedFaces": ["f-3"], "UnsuccessfulFaceDeletions": []},
        {"CollectionId": collection, "FaceIds": ["f-3"]},
    )
    stubber.add_response("delete_collection", {"StatusCode": 200}, {"CollectionId": collection})
    with db.transaction() as session:
        project_row = projects.get(session, project_id=project)
        projects.request_deletion(
            session, project=project_row, requested_by="olga", now=datetime.now(UTC)
        )
    seen: list[tuple[str, int, int]] = []
    done = ProjectEraser(db=db, store=store, index=index).run(
        project,
        now=lambda: datetime.now(UTC),
        on_progress=lambda d: seen.append((d.status, d.photos_erased, d.photos_total)),
    )

    assert done.status == "done"
    assert seen == [("running", 1, 1), ("done", 1, 1)]
    with db.transaction() as session:
        assert faces_left(session, project) == (0, 0, 0)
    assert list(store.list(f"photos/{project}/")) == []


def test_a_project_without_a_collection_is_erased_all_the_same(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    project = uuid.uuid4()
    stubber.add_client_error(
        "delete_collection",
        "ResourceNotFoundException",
        "no such collection",
        expected_params={"CollectionId": f"{PREFIX}-project-{project}"},
    )
    with runtime.database.transaction() as session:
        index.forget_project(session, project_id=project)


def test_retention_deletes_an_expired_selfies_rekognition_face(
    runtime: Runtime, index: RekognitionIndex, stubber: Stubber
) -> None:
    store, db = runtime.store, runtime.database
    old = datetime.now(UTC) - timedelta(days=400)
    selfie_id = uuid.uuid4()
    key = "selfies/obama/1.jpg"
    store.put(key, io.BytesIO(b"\xff\xd8\xff"), content_type="image/jpeg")
    with db.transaction() as session:
        session.add(
            PendingUpload(
                id=selfie_id,
                kind=UploadKind.SELFIE,
                owner_id="obama",
                key=key,
                content_type="image/jpeg",
                max_bytes=1 << 20,
                status=UploadStatus.UPLOADED,
                url_expires_at=old,
                created_at=old,
            )
        )
        session.flush()
        session.add(
            SelfieFace(
                user_id="obama",
                selfie_id=selfie_id,
                box=BOX,
                external_face_id="s-1",
                created_at=old,
            )
        )
    selfies = f"{PREFIX}-selfies"
    stubber.add_response(
        "list_faces",
        {"Faces": [], "FaceModelVersion": "7.0"},
        {"CollectionId": selfies, "MaxResults": 4096},
    )
    stubber.add_response(
        "delete_faces",
        {"DeletedFaces": ["s-1"], "UnsuccessfulFaceDeletions": []},
        {"CollectionId": selfies, "FaceIds": ["s-1"]},
    )

    with db.transaction() as session:
        report = expire_selfies(
            session, store, index, cutoff=datetime.now(UTC) - timedelta(days=365)
        )

    assert (report.selfies, report.faces) == (1, 1)
    assert store.head(key) is None
    with db.transaction() as session:
        assert session.get(SelfieFace, "obama") is None
        assert session.get(PendingUpload, selfie_id).status == UploadStatus.ERASED
