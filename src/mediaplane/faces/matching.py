"""Which user is which face of a photo: the rules applied to the index's candidates.

The index answers "faces close enough to this user" and "users close enough to this face";
a photo's matches are then chosen by these rules, whatever the order photos and selfies came
in:

- a user matches a photo at most once, with their closest face there;
- a face is at most one user: two faces of a photo are never the same person, and one face is
  never two people;
- an excluded (photo face, user) pair never matches ("not me": a negative example).

`assign` is greedy on similarity, closest pair first: the pair both sides agree on most is
settled first, then the next pair among the faces and users still free. (An optimal assignment
would maximise the sum; with a threshold well below same-person similarities, the two differ
only for look-alikes, where the closest pair is the better guess anyway.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Set

from mediaplane.faces.index import Candidate

# (photo face id, user id) pairs that must never match.
Exclusions = Set[tuple[uuid.UUID, str]]


def assign(
    candidates: Iterable[Candidate], *, excluded: Exclusions = frozenset()
) -> list[Candidate]:
    """The candidates kept by the rules above, closest first."""
    ordered = sorted(
        (c for c in candidates if (c.photo_face_id, c.user_id) not in excluded),
        key=lambda c: (-c.similarity, str(c.photo_face_id), c.user_id),
    )
    faces_taken: set[uuid.UUID] = set()
    users_in_photo: set[tuple[uuid.UUID, str]] = set()
    kept = []
    for c in ordered:
        if c.photo_face_id in faces_taken or (c.photo_id, c.user_id) in users_in_photo:
            continue
        faces_taken.add(c.photo_face_id)
        users_in_photo.add((c.photo_id, c.user_id))
        kept.append(c)
    return kept
