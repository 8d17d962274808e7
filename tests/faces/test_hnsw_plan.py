"""Face search at a size where PostgreSQL really walks the HNSW index, and finds what an exact
search finds.

The fixtures' faces (dlib, real photos) sit among thousands of synthetic descriptors drawn
around them, plus a crowd of near-copies of one face: more than `hnsw.ef_search` (the
service's `EF_SEARCH`), so the index's iterative scan has to go on past its first
candidates. The query checked is the one `PgvectorIndex` sends (captured as it runs), and the
exact answer is computed in numpy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from mediaplane.faces import DetectedFace, LocalFaceEngine, distance_from_similarity
from mediaplane.faces.index import EF_SEARCH, PgvectorIndex, _iterative_scan
from mediaplane.runtime import Runtime
from tests.faces.test_engine_contract import LIMITS, fixture_bytes

pytestmark = pytest.mark.slow

HNSW_INDEX = "ix_photo_faces_embedding_hnsw"
THRESHOLD = 50.0  # the default FACE_MATCH_THRESHOLD: distance 0.6
SYNTHETIC = 20_000
NEAR_COPIES = EF_SEARCH + 100  # more than one HNSW candidate list
PHOTOS = ("biden_2.jpg", "obama_2.jpg", "obama_and_biden.jpg")
SELFIES = {"biden": "biden_1.jpg", "obama": "obama_1.jpg"}


@pytest.fixture(scope="module")
def faces() -> dict[str, list[DetectedFace]]:
    engine = LocalFaceEngine(limits=LIMITS)
    return {name: engine.detect(fixture_bytes(name)) for name in (*PHOTOS, *SELFIES.values())}


def add_upload(session: Session, project: uuid.UUID) -> uuid.UUID:
    upload_id = uuid.uuid4()
    now = datetime.now(UTC)
    session.execute(
        text(
            """
            INSERT INTO uploads (id, kind, owner_id, project_id, key, content_type, max_bytes,
                                 status, url_expires_at, created_at)
            VALUES (:id, 'photo', 'pat', :project, :key, 'image/jpeg', 1, 'uploaded', :t, :t)
            """
        ),
        {"id": upload_id, "project": project, "key": f"k/{upload_id}", "t": now + timedelta(1)},
    )
    return upload_id


def vector_text(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


def insert_synthetic(session: Session, project: uuid.UUID, vectors: np.ndarray) -> None:
    photo = add_upload(session, project)
    session.execute(
        text(
            """
            INSERT INTO photo_faces (id, photo_id, project_id, box, quality, embedding)
            SELECT gen_random_uuid(), :photo, :project, '{}'::jsonb, 1.0, CAST(v AS vector)
            FROM unnest(CAST(:vectors AS text[])) AS v
            """
        ),
        {"photo": photo, "project": project, "vectors": [vector_text(v) for v in vectors]},
    )


@contextmanager
def captured_statements(session: Session) -> Iterator[list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_search_uses_the_hnsw_index_and_finds_what_exact_search_finds(
    runtime: Runtime, faces: dict[str, list[DetectedFace]]
) -> None:
    index = PgvectorIndex()
    project = uuid.uuid4()
    rng = np.random.default_rng(16)
    real = np.array([f.embedding for fs in faces.values() for f in fs], dtype=np.float64)
    biden = np.array(faces[SELFIES["biden"]][0].embedding)
    with runtime.database.transaction() as session:
        # Bulk rows go in without the index, which is then rebuilt from its own definition:
        # building once is much faster than 20 000 insertions into the graph.
        definition = session.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": HNSW_INDEX}
        ).scalar_one()
        session.execute(text(f"DROP INDEX {HNSW_INDEX}"))
        # Strangers: around the real faces, as far from each other as different people are.
        centres = real[rng.integers(0, len(real), SYNTHETIC)]
        insert_synthetic(session, project, centres + rng.normal(0, 0.07, (SYNTHETIC, 128)))
        # One face seen many times (distance ~0.25 from Biden's selfie): more than ef_search.
        insert_synthetic(session, project, biden + rng.normal(0, 0.022, (NEAR_COPIES, 128)))
        photo_ids = {}
        for name in PHOTOS:
            photo_ids[name] = add_upload(session, project)
            index.add_photo(
                session, photo_id=photo_ids[name], project_id=project, faces=faces[name], image=b""
            )
        for user, selfie in SELFIES.items():
            index.enroll(
                session,
                user_id=user,
                selfie_id=uuid.uuid4(),
                face=faces[selfie][0],
                image=b"",
                now=datetime.now(UTC),
            )
        session.execute(text(definition))
        session.execute(text("ANALYZE photo_faces"))

    names = {v: k for k, v in photo_ids.items()}
    max_distance = distance_from_similarity(THRESHOLD)
    for user in SELFIES:
        with runtime.database.transaction() as session:
            with captured_statements(session) as seen:
                found = index.candidates_for_user(session, user_id=user, threshold=THRESHOLD)
            search, params = next((s, p) for s, p in seen if "photo_faces" in s and "<->" in s)
            connection = session.connection()
            _iterative_scan(session)  # as the search itself runs it
            plan = "\n".join(
                connection.exec_driver_sql(f"EXPLAIN {search}", params).scalars()  # type: ignore[arg-type]
            )
            # Exact answer: every stored face within the distance, by brute force.
            rows = session.execute(
                text("SELECT id, embedding::text FROM photo_faces WHERE embedding IS NOT NULL")
            ).all()
            selfie = session.execute(
                text("SELECT embedding::text FROM selfie_faces WHERE user_id = :u"), {"u": user}
            ).scalar_one()
        assert f"Index Scan using {HNSW_INDEX} on photo_faces" in plan, plan
        assert "Seq Scan" not in plan, plan

        ids = [r.id for r in rows]
        matrix = np.array([np.fromstring(r.embedding[1:-1], sep=",") for r in rows])
        distances = np.linalg.norm(matrix - np.fromstring(selfie[1:-1], sep=","), axis=1)
        exact = {ids[i] for i in np.flatnonzero(distances <= max_distance)}
        assert {c.photo_face_id for c in found} == exact
        assert len(found) == len(exact)  # each face once
        if user == "biden":
            # The crowd of look-alikes too: past the index's first ef_search candidates.
            assert len(exact) >= NEAR_COPIES + 2

        real_photos = {names[c.photo_id] for c in found if c.photo_id in names}
        assert real_photos == {f"{user}_2.jpg", "obama_and_biden.jpg"}


def test_the_index_and_the_search_are_the_ones_measured_at_1m(runtime: Runtime) -> None:
    # docs/faces.md, "Index at scale: the choice": m 32 / ef_construction 128 searched at
    # ef_search 200 gave recall@10 0.99 at 1M face-like descriptors; 16 / 64 (pgvector's
    # defaults, migration 0004) 0.87.
    with runtime.database.transaction() as session:
        options = session.execute(
            text("SELECT reloptions FROM pg_class WHERE relname = :name"), {"name": HNSW_INDEX}
        ).scalar_one()
        _iterative_scan(session)
        ef_search = session.execute(text("SHOW hnsw.ef_search")).scalar_one()

    assert sorted(options) == ["ef_construction=128", "m=32"]
    assert ef_search == "200"
