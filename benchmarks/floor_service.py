"""The Gateway's floor: the cheapest service doing a submission's essential work.

It parses the body (a 20-node DAG) with pydantic, commits one SQLite row (WAL, like the
Gateway's log) and makes one unary gRPC call to a second process before answering --
the same libraries (FastAPI, uvicorn, pydantic, sqlite3, grpcio) and the same hops as the
Gateway, without any of its guarantees (idempotency, leases, breaker, traces, metrics).
``bench_gateway.py`` measures both in the same run; the ratio is what our code costs.

With ``dagmanager`` the front's one call is the Gateway's own: ``DiffUnary`` on a real
DAG Manager (the DAG re-serialised from the parsed body), instead of a 64-byte call to a
backend that answers without diffing.  Against that front the Gateway's ratio is what
the Gateway's code costs; against the plain one it is the Gateway and the diff together.

    python floor_service.py grpc PORT
    python floor_service.py http PORT GRPC_PORT DB_PATH [dagmanager]
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import uuid
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict

from qmtl.services.dagmanager.proto.dagmanager_pb2 import DiffRequest
from qmtl.services.dagmanager.proto.dagmanager_pb2_grpc import DagManagerStub

METHOD = "/floor.Diff/Diff"


def serve_grpc(port: int) -> None:
    async def run() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "floor.Diff",
            {"Diff": grpc.unary_unary_rpc_method_handler(lambda request, _ctx: request[:64])},
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


def serve_http(port: int, grpc_port: int, db_path: str, *, dagmanager: bool = False) -> None:
    class Node(BaseModel):
        model_config = ConfigDict(extra="allow")
        node_id: str

    class Dag(BaseModel):
        model_config = ConfigDict(extra="allow")
        nodes: list[Node]

    class Submission(BaseModel):
        dag: Dag
        world_id: str = ""
        strategy_id: str = ""

    db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS log (id TEXT PRIMARY KEY, body BLOB)")
    app = FastAPI()
    state: dict[str, Any] = {}

    @app.post("/strategies")
    async def submit(request: Request) -> Response:
        raw = await request.body()
        submission = Submission.model_validate_json(raw)
        submission_id = uuid.uuid4().hex
        db.execute("INSERT INTO log VALUES (?, ?)", (submission_id, raw))
        if "call" not in state:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
            state["call"] = (
                DagManagerStub(channel).DiffUnary if dagmanager else channel.unary_unary(METHOD)
            )
        if dagmanager:
            request_message: Any = DiffRequest(
                strategy_id=f"floor-{submission_id}", dag_json=submission.dag.model_dump_json(),
                world_id=submission.world_id,
            )  # fmt: skip
        else:
            request_message = submission.dag.nodes[0].node_id.encode()
        await state["call"](request_message, timeout=5)
        body = f'{{"status":"completed","submission_id":"{submission_id}"}}'
        return Response(body, media_type="application/json")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    if sys.argv[1] == "grpc":
        serve_grpc(int(sys.argv[2]))
    else:
        serve_http(
            int(sys.argv[2]),
            int(sys.argv[3]),
            sys.argv[4],
            dagmanager=sys.argv[5:] == ["dagmanager"],
        )
