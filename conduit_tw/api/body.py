"""
Type checks for JSON request bodies against the spec's schema types.

Every client-server endpoint documents the JSON type of each body key
(client-server-api OpenAPI, C{requestBody}); a value of another type is
400 M_BAD_JSON ("valid JSON, but it was malformed in some way, e.g. ...
invalid values for keys", client-server-api "Common error codes"), never
a 500 from a handler tripping over it. A C{null} for an optional key is
treated as the key being absent.
"""

from __future__ import annotations

from typing import Any, Mapping

from conduit_tw.errors import Codes, MatrixError, missing_param

#: Spec schema type -> Python types of the decoded JSON value.
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def is_json_type(value: Any, spec_type: str) -> bool:
    """Whether C{value} is of the spec schema type C{spec_type} (bool is no number)."""
    if isinstance(value, bool) and spec_type != "boolean":
        return False
    return isinstance(value, _TYPES[spec_type])


def body_field(
    body: Mapping[str, Any],
    key: str,
    spec_type: str,
    required: bool = False,
    default: Any = None,
    errcode: str = Codes.BAD_JSON,
    where: str = "",
) -> Any:
    """
    C{body[key]} checked against its spec type.

    @param default: returned when the key is absent or C{null}.
    @param where: the path of C{body} inside the request body (e.g.
        C{"creation_content."}), for the error message.
    @raise MatrixError: 400 M_MISSING_PARAM when a required key is absent
        or null; 400 C{errcode} (M_BAD_JSON by default) when the value is
        of another type.
    """
    value = body.get(key)
    if value is None:
        if required:
            raise missing_param(f"'{where}{key}' is required")
        return default
    if not is_json_type(value, spec_type):
        raise MatrixError(400, errcode, f"'{where}{key}' must be of type {spec_type}")
    return value


def check_body(
    body: Mapping[str, Any], schema: Mapping[str, str], required: tuple[str, ...] = (),
    where: str = "",
) -> None:
    """
    Check every key of C{schema} (key -> spec type) present in C{body};
    see L{body_field}. Keys named in C{required} must be present.
    """
    for key, spec_type in schema.items():
        body_field(body, key, spec_type, required=key in required, where=where)
