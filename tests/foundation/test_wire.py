"""The wire codecs give back what they were given: HTTP body <-> SubmissionRequest,
Gateway answer <-> Submitted, and protobuf <-> contract for the DAG Manager."""

from __future__ import annotations

import json

import pytest

from qmtl.foundation.contracts import BufferInstruction, DiffResult, SubmissionRequest
from qmtl.foundation.dag import chain_dag
from qmtl.foundation.errors import InvalidJson, InvalidRequest
from qmtl.foundation.wire import Submitted, decode_submission, encode_submission
from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb
from qmtl.services.dagmanager.proto_codec import (
    request_from_proto,
    request_to_proto,
    result_chunks,
    result_from_chunks,
)

LIMIT = 1 << 24
DAG = json.dumps(json.loads(chain_dag(5, salt="wire")), sort_keys=True)
FULL = SubmissionRequest(
    strategy_id="s-1", dag_json=DAG, world_id="w", execution_domain="live", as_of="2026-01-01",
    partition="p1", admin_url="http://127.0.0.1:8001", metadata={"owner": "team-a"},
)  # fmt: skip
RESULT = DiffResult(
    queue_map={f"N{i}": f"q{i}" for i in range(5)},
    buffering=(BufferInstruction("N1", 5, 60),), sentinel_id="S", version="v", crc32=7,
    new_queues=3, total_nodes=5,
)  # fmt: skip


@pytest.mark.parametrize("request_", [FULL, SubmissionRequest(strategy_id="bare", dag_json=DAG)])
def test_a_request_comes_back_equal_with_the_same_submission_id(
    request_: SubmissionRequest,
) -> None:
    decoded, nodes = decode_submission(encode_submission(request_), LIMIT)
    assert decoded == request_ and nodes == 5
    assert decoded.submission_id() == request_.submission_id()


def test_the_dag_travels_as_an_object_and_its_text_is_not_reparsed() -> None:
    body = json.loads(encode_submission(FULL))
    assert isinstance(body["dag"], dict) and "dag_json" not in body
    assert encode_submission(FULL).startswith(b'{"dag":' + DAG.encode())


@pytest.mark.parametrize(
    ("raw", "error", "words"),
    [
        (b"{", InvalidJson, "body"),
        (b"[]", InvalidRequest, "JSON object"),
        (b'{"dag": {}, "dag_json": "x"}', InvalidRequest, "unknown field(s) dag_json"),
        (b'{"strategy_id": "s"}', InvalidRequest, "dag: the strategy DAG is required"),
        (b'{"dag": 3}', InvalidRequest, "dag: must be a DAG object"),
    ],
)
def test_bad_bodies_name_the_problem(raw: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        decode_submission(raw, LIMIT)


def test_a_completed_answer_comes_back_equal() -> None:
    answer = Submitted("sid", "s-1", RESULT, duplicate=True)
    again = Submitted.from_dict(json.loads(json.dumps(answer.to_dict())))
    assert (again.submission_id, again.strategy_id, again.duplicate) == ("sid", "s-1", True)
    assert again.diff == RESULT and again.queue_map == RESULT.queue_map


def test_protobuf_round_trips_for_request_and_chunked_result() -> None:
    bare = SubmissionRequest(**{**FULL.to_dict(), "admin_url": "", "metadata": {}})
    assert (
        request_from_proto(pb.DiffRequest.FromString(request_to_proto(bare).SerializeToString()))
        == bare
    )
    for chunk_size in (1, 2, 100):
        chunks = [
            pb.DiffChunk.FromString(c.SerializeToString())
            for c in result_chunks(RESULT, chunk_size)
        ]
        assert result_from_chunks(chunks) == RESULT
    assert (
        len(result_chunks(RESULT, 2)) == 3 and sum(c.final for c in result_chunks(RESULT, 2)) == 1
    )
