"""The OpenAPI document tells the truth about request bodies read by `JsonBody[T]` (gateway.deps).

Those bodies are read by a dependency (for the size limit and one parse), which FastAPI cannot see into; here
each such route gets `T` as its JSON request body, with T's schema among the components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from gateway.errors import all_routes


def _body_model(route: APIRoute) -> type[BaseModel] | None:
    for dep in route.dependant.dependencies:
        model = getattr(dep.call, "body_model", None)
        if model is not None:
            return model  # type: ignore[no-any-return]
    return None


def document_json_bodies(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
        for route in all_routes(app.routes):
            model = _body_model(route) if isinstance(route, APIRoute) else None
            if model is None or not isinstance(route, APIRoute):
                continue
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            ref = {"$ref": f"#/components/schemas/{model.__name__}"}
            for method in route.methods or ():
                operation = doc["paths"][route.path_format][method.lower()]
                operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
