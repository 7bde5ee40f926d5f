#!/usr/bin/env python3
"""Write ``deploy/helm/qmtl/values.schema.json``: what Helm checks every values file of
the services chart against before it renders anything.

    python scripts/chart_schema.py [--check]

The ``config`` value is merged into ``qmtl.yml``, so its schema is the configuration
model's own: a key the services would refuse at start is refused by ``helm install``.
Exit codes: 0 written/up to date, 1 out of date (``--check``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qmtl.foundation.config import QmtlConfig  # noqa: E402

SCHEMA_PATH = ROOT / "deploy" / "helm" / "qmtl" / "values.schema.json"


def strict(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object that refuses keys it does not name: a typo is an error, not a no-op."""
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


STRING = {"type": "string"}
BOOL = {"type": "boolean"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
ANY_OBJECT = {"type": "object"}
QUANTITY = {"type": ["string", "integer"]}
RESOURCES = strict(
    {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    }
)
SERVICE = strict(
    {
        "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
        "annotations": STRING_MAP,
    }
)
REPLICAS = {"type": "integer", "minimum": 0}
TAG = {"type": ["string", "number"]}
PROBE = strict(
    {
        key: {"type": "integer", "minimum": 0 if key == "initialDelaySeconds" else 1}
        for key in (
            "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold",
            "successThreshold",
        )
    }
)  # fmt: skip
DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"}


def schema() -> dict[str, Any]:
    config = QmtlConfig.model_json_schema()
    defs = config.pop("$defs", {})
    config["description"] = "qmtl.yml settings merged over the chart's (same keys as qmtl.yml)"
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "qmtl chart values",
        **strict(
            {
                "image": strict(
                    {
                        "repository": {"type": "string", "minLength": 1},
                        "tag": {"type": ["string", "number"]},
                        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                    }
                ),
                "imagePullSecrets": {"type": "array", "items": strict({"name": STRING})},
                "fullnameOverride": {"type": "string", "maxLength": 40},
                "commonLabels": STRING_MAP,
                "tokens": strict(
                    {
                        key: STRING
                        for key in (
                            "existingSecret",
                            "dagmanagerAdmin",
                            "gatewayAdmin",
                            "gatewaySubmit",
                            "worldserviceAdmin",
                            "controlbus",
                        )
                    }
                ),
                "postgresql": strict(
                    {
                        "existingSecret": STRING,
                        **{
                            f"{service}Dsn": {
                                "type": "string",
                                "pattern": r"^(postgres(ql)?://.*)?$",
                            }
                            for service in ("dagmanager", "gateway", "worldservice")
                        },
                    }
                ),
                "kafka": strict(
                    {
                        "brokers": STRING,
                        "controlbus": BOOL,
                        "controlbusTopic": {"type": "string", "minLength": 1},
                    }
                ),
                "persistence": strict(
                    {
                        "enabled": BOOL,
                        "storageClass": STRING,
                        "size": {"type": "string", "minLength": 1},
                    }
                ),
                "gateway": strict(
                    {
                        "replicas": REPLICAS,
                        "imageTag": TAG,
                        "port": PORT,
                        "service": SERVICE,
                        "resources": RESOURCES,
                    }
                ),
                "dagmanager": strict(
                    {
                        "replicas": REPLICAS,
                        "imageTag": TAG,
                        "httpPort": PORT,
                        "grpcPort": PORT,
                        "service": SERVICE,
                        "resources": RESOURCES,
                    }
                ),
                "worldservice": strict(
                    {
                        "replicas": REPLICAS,
                        "imageTag": TAG,
                        "port": PORT,
                        "service": SERVICE,
                        "resources": RESOURCES,
                        "prometheusUrl": {"type": "string", "pattern": r"^(https?://.+)?$"},
                        "guardAllowedSources": {"type": "array", "items": STRING},
                    }
                ),
                "config": config,
                "serviceMonitor": strict(
                    {"enabled": BOOL, "interval": DURATION, "labels": STRING_MAP}
                ),
                "strategies": strict(
                    {
                        "podMonitor": strict(
                            {
                                "enabled": BOOL,
                                "selector": ANY_OBJECT,
                                "port": {"type": "string", "minLength": 1},
                                "interval": DURATION,
                            }
                        )
                    }
                ),
                "podDisruptionBudget": strict(
                    {"enabled": BOOL, "maxUnavailable": {"type": ["integer", "string"]}}
                ),
                "podAnnotations": STRING_MAP,
                "podSecurityContext": ANY_OBJECT,
                "securityContext": ANY_OBJECT,
                "nodeSelector": STRING_MAP,
                "tolerations": {"type": "array"},
                "affinity": ANY_OBJECT,
                "probes": strict({"liveness": PROBE, "readiness": PROBE}),
            }
        ),
        "$defs": defs,
    }


def render() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not SCHEMA_PATH.is_file() or SCHEMA_PATH.read_text() != text:
            print(
                f"{SCHEMA_PATH} is out of date; run: python scripts/chart_schema.py",
                file=sys.stderr,
            )
            return 1
        print(f"up to date: {SCHEMA_PATH}")
        return 0
    SCHEMA_PATH.write_text(text)
    print(f"wrote: {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
