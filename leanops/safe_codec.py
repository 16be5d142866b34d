"""Task results as data, never as code: the format of every result a later run may read back.

A cached result is read back from storage that others can write (the shared results bucket). Pickle
would run whatever a writer planted there, so results are encoded as:

- a JSON document for plain data: numbers, text, lists, tuples, dicts, the result dataclasses of
  :mod:`leanops.results` (looked up in that module by name, never imported by name), numpy scalars;
- binary parts ("blobs") for what JSON cannot hold: frames and series as Parquet, numpy arrays as
  ``.npy`` without pickled objects, fitted models as skops, each stored with the SHA-256 of its bytes.

Reading checks, before any decoder sees a byte, that the document is this format (a pickle is named
as such and refused), that every blob's bytes hash to the digest stored with them, and that a model
holds only the scikit-learn / XGBoost / numpy types our pipelines are made of (:data:`MODEL_TYPES`),
with function steps limited to the ones :mod:`leanops.features` builds. Anything else raises
:class:`RefusedResult` and nothing is decoded.

The digests catch a blob altered, truncated or swapped under a document; they do not make a document
authentic (whoever can write the storage can write a matching digest). What keeps a planted document
from running code is that no decoder here executes code: JSON, Parquet, ``.npy`` without pickle and
skops with an explicit type list.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import io
import json
import math
import operator
import zipfile
from typing import Any

import numpy as np
import pandas as pd

from leanops import results as _results
from leanops.errors import LeanopsError

FORMAT = "leanops-result/1"

# Every type a fitted model or baseline of leanops.modeling is made of, by skops' name for it: the
# pipeline and column steps, the encoders, imputers and scalers, the estimators, the function steps of
# leanops.features, and the numpy/scipy containers skops stores their fitted state in. A model that
# names any other type is refused before it is constructed.
MODEL_TYPES: frozenset[str] = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.slice", "builtins.str", "builtins.int",
    "builtins.float", "builtins.bool", "builtins.NoneType", "builtins.bytes", "builtins.bytearray",
    "numpy.ndarray", "numpy.dtype", "numpy.float32", "numpy.float64", "numpy.int32", "numpy.int64",
    "sklearn.pipeline.Pipeline", "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.preprocessing._encoders.OrdinalEncoder", "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._data.StandardScaler", "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression", "sklearn.linear_model._ridge.Ridge",
    "sklearn.dummy.DummyClassifier", "sklearn.dummy.DummyRegressor",
    "xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor", "xgboost.core.Booster",
    "functools.partial", "operator.methodcaller", "operator.attrgetter",
    "pandas.core.tools.numeric.to_numeric", "pandas.core.tools.datetimes.to_datetime",
})

# The function steps leanops.features builds (FunctionTransformer funcs): which DataFrame methods they
# call, which attributes they read, which pandas functions they apply. A planted model with any other
# step (say ``methodcaller("to_csv", path)``) would do something at predict time: it is refused.
_STEP_METHODS = frozenset({"apply", "astype", "fillna"})
_STEP_FUNCTIONS = (pd.to_numeric, pd.to_datetime)


class RefusedResult(LeanopsError):
    """Stored result bytes that are not a verified leanops result (a pickle, a tampered blob, an
    unknown type): refused without decoding them."""


class RecordedError(Exception):
    """An exception as a failed task recorded it: its type's name and message (never re-imported)."""

    def __init__(self, type_name: str, message: str):
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}")


def _result_types() -> dict[str, type]:
    return {
        name: value for name, value in vars(_results).items()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == _results.__name__
    }


RESULT_TYPES: dict[str, type] = _result_types()
"""The dataclasses a result document may name: those of leanops.results, by class name."""


# --- encoding --------------------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """``value`` as a result document (UTF-8 JSON text: it may be embedded in another JSON record)."""
    blobs: list[dict[str, str]] = []
    tree = _encode(value, blobs)
    return json.dumps({"format": FORMAT, "value": tree, "blobs": blobs}, allow_nan=False, separators=(",", ":")).encode()


def _blob(kind: str, data: bytes, blobs: list[dict[str, str]]) -> int:
    blobs.append({"kind": kind, "sha256": hashlib.sha256(data).hexdigest(), "data": base64.b64encode(data).decode("ascii")})
    return len(blobs) - 1


def _encode(value: Any, blobs: list[dict[str, str]]) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return {"$": "numpy", "dtype": value.dtype.str, "v": _encode(value.item(), blobs)}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
    if isinstance(value, pd.DataFrame):
        return {"$": "frame", "blob": _blob("parquet", _parquet(value), blobs)}
    if isinstance(value, pd.Series):
        frame = value.to_frame(name="values")
        return {"$": "series", "name": _encode(value.name, blobs), "blob": _blob("parquet", _parquet(frame), blobs)}
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {"$": "ndarray", "blob": _blob("npy", buffer.getvalue(), blobs)}
    if isinstance(value, list):
        return [_encode(v, blobs) for v in value]
    if isinstance(value, tuple):
        return {"$": "tuple", "items": [_encode(v, blobs) for v in value]}
    if isinstance(value, dict):
        return {"$": "dict", "items": [[_encode(k, blobs), _encode(v, blobs)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if RESULT_TYPES.get(name) is not type(value):
            raise TypeError(f"cannot store a {type(value).__qualname__} as a result: only the dataclasses of leanops.results")
        fields = {f.name: _encode(getattr(value, f.name), blobs) for f in dataclasses.fields(value)}
        return {"$": "result", "type": name, "fields": fields}
    if isinstance(value, BaseException):
        return {"$": "exception", "type": f"{type(value).__module__}.{type(value).__qualname__}", "message": str(value)}
    if _is_model(value):
        return {"$": "model", "blob": _blob("skops", _skops(value), blobs)}
    raise TypeError(f"cannot store a {type(value).__module__}.{type(value).__qualname__} as a result safely")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=True)
    return buffer.getvalue()


def _is_model(value: Any) -> bool:
    from sklearn.base import BaseEstimator

    return isinstance(value, BaseEstimator)


def _skops(model: Any) -> bytes:
    import skops.io as sio

    data = sio.dumps(model, compression=zipfile.ZIP_DEFLATED)
    _check_model_types(data)  # what we could not read back, we refuse to write
    return data


# --- decoding --------------------------------------------------------------------------------------


def decode(data: bytes) -> Any:
    """The value of a result document, after checking it whole (see :func:`verify`)."""
    document = verify(data)
    return _decode(document["value"], document["blobs"])


def verify(data: bytes) -> dict[str, Any]:
    """The parsed document, if ``data`` is a result document whose blobs all match their digests and
    whose models hold only :data:`MODEL_TYPES`; otherwise :class:`RefusedResult`. Decodes nothing."""
    if _looks_like_pickle(data):
        raise RefusedResult("refused a stored result: it is a pickle (only leanops result documents are read back)")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise RefusedResult(f"refused a stored result: not a leanops result document ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise RefusedResult(f"refused a stored result: format {found!r} is not {FORMAT!r}")
    blobs = document.get("blobs")
    if not isinstance(blobs, list) or "value" not in document:
        raise RefusedResult("refused a stored result: its document has no value or blob list")
    decoded: list[tuple[str, bytes]] = []
    for index, blob in enumerate(blobs):
        if not isinstance(blob, dict) or blob.get("kind") not in ("parquet", "npy", "skops"):
            raise RefusedResult(f"refused a stored result: blob {index} is of no known kind")
        try:
            raw = base64.b64decode(blob["data"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise RefusedResult(f"refused a stored result: blob {index} is not base64") from None
        digest = hashlib.sha256(raw).hexdigest()
        if digest != blob.get("sha256"):
            raise RefusedResult(
                f"refused a stored result: blob {index} ({blob['kind']}) hashes to {digest[:12]}..., "
                f"not the {str(blob.get('sha256'))[:12]}... stored with it (tampered or corrupt)"
            )
        if blob["kind"] == "skops":
            _check_model_types(raw)
        decoded.append((blob["kind"], raw))
    document["blobs"] = decoded
    return document


def _looks_like_pickle(data: bytes) -> bool:
    """Raw pickle (protocol 2+ starts with PROTO, 0x80) or Prefect's base64-wrapped pickle."""
    head = data[:64].lstrip()
    if head[:1] == b"\x80":
        return True
    if head[:1] in (b"{", b"["):
        return False
    try:
        return base64.b64decode(head[:16] + b"=" * (-len(head[:16]) % 4))[:1] == b"\x80"
    except (binascii.Error, ValueError):
        return False


def _decode(node: Any, blobs: list[tuple[str, bytes]]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, blobs) for v in node]
    if not isinstance(node, dict):
        raise RefusedResult(f"refused a stored result: unexpected JSON value {type(node).__name__}")
    tag = node.get("$")
    if tag == "tuple":
        return tuple(_decode(v, blobs) for v in node["items"])
    if tag == "dict":
        return {_hashable(_decode(k, blobs)): _decode(v, blobs) for k, v in node["items"]}
    if tag == "float":
        if node["v"] not in ("nan", "inf", "-inf"):
            raise RefusedResult(f"refused a stored result: {node['v']!r} is not a float")
        return float(node["v"])
    if tag == "numpy":
        dtype = np.dtype(str(node["dtype"]))
        if dtype.kind not in "biufc":
            raise RefusedResult(f"refused a stored result: numpy scalar of dtype {dtype}")
        return dtype.type(_decode(node["v"], blobs))
    if tag == "result":
        return _result(node, blobs)
    if tag == "exception":
        return RecordedError(str(node["type"]), str(node["message"]))
    if tag in ("frame", "series", "ndarray", "model"):
        return _decode_blob(tag, node, blobs)
    raise RefusedResult(f"refused a stored result: unknown node {tag!r}")


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict)):
        raise RefusedResult("refused a stored result: a dict key that is a list or dict")
    return key


def _result(node: dict[str, Any], blobs: list[tuple[str, bytes]]) -> Any:
    cls = RESULT_TYPES.get(node.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise RefusedResult(f"refused a stored result: {node.get('type')!r} is not a result type of leanops.results")
    names = {f.name for f in dataclasses.fields(cls)}
    stored = node.get("fields")
    if not isinstance(stored, dict) or set(stored) != names:
        raise RefusedResult(f"refused a stored result: the fields of {cls.__name__} are {sorted(names)}")
    # Built field by field, as it was: no __init__ or __post_init__ runs on stored data.
    instance = object.__new__(cls)
    for name, value in stored.items():
        object.__setattr__(instance, name, _decode(value, blobs))
    return instance


def _decode_blob(tag: str, node: dict[str, Any], blobs: list[tuple[str, bytes]]) -> Any:
    index = node.get("blob")
    expected = {"frame": "parquet", "series": "parquet", "ndarray": "npy", "model": "skops"}[tag]
    if not isinstance(index, int) or not 0 <= index < len(blobs) or blobs[index][0] != expected:
        raise RefusedResult(f"refused a stored result: {tag} refers to no {expected} blob")
    raw = blobs[index][1]
    if tag == "ndarray":
        return np.load(io.BytesIO(raw), allow_pickle=False)
    if tag == "model":
        return _load_model(raw)
    frame = pd.read_parquet(io.BytesIO(raw), engine="pyarrow")
    if tag == "frame":
        return frame
    series = frame["values"]
    series.name = _decode(node.get("name"), blobs)
    return series


# --- models ----------------------------------------------------------------------------------------


def _model_types(data: bytes) -> set[str]:
    """Every type a skops file names, read from its schema (JSON) without constructing anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise RefusedResult(f"refused a stored model: not a skops file ({error})") from None
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def _check_model_types(data: bytes) -> None:
    unknown = _model_types(data) - MODEL_TYPES
    if unknown:
        raise RefusedResult(f"refused a stored model: it names types outside leanops' models: {sorted(unknown)}")


def _load_model(data: bytes) -> Any:
    import skops.io as sio

    _check_model_types(data)
    trusted = sorted(set(sio.get_untrusted_types(data=data)) & MODEL_TYPES)
    model = sio.loads(data, trusted=trusted)
    _check_function_steps(model)
    return model


def _check_function_steps(model: Any) -> None:
    """Refuse a model whose function steps are not the ones leanops.features builds. Runs before the
    model is returned, so before any of its steps is ever called."""
    from sklearn.base import BaseEstimator

    seen: set[int] = set()

    def walk(value: Any) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, operator.methodcaller):
            constructor, args = value.__reduce__()
            if isinstance(constructor, functools.partial):  # methodcaller(name, *args, **kwargs)
                name, args = constructor.args[0], (*constructor.args[1:], *args, *constructor.keywords.values())
            else:
                name, args = args[0], args[1:]
            if name not in _STEP_METHODS:
                raise RefusedResult(f"refused a stored model: a step calls DataFrame.{name}, not a leanops feature step")
            for arg in args:
                walk(arg)
        elif isinstance(value, operator.attrgetter):
            for path in value.__reduce__()[1]:
                if not path.startswith("dt.") or "__" in path:
                    raise RefusedResult(f"refused a stored model: a step reads {path!r}, not a leanops feature step")
        elif isinstance(value, functools.partial):
            if value.func not in _STEP_FUNCTIONS:
                raise RefusedResult(f"refused a stored model: a step applies {value.func!r}, not a leanops feature step")
        elif isinstance(value, BaseEstimator):
            for attribute in vars(value).values():
                walk(attribute)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif callable(value) and not isinstance(value, (type, np.ndarray)) and not hasattr(value, "get_booster"):
            from xgboost import Booster

            if not isinstance(value, Booster):
                raise RefusedResult(f"refused a stored model: it holds the callable {value!r}")

    walk(model)
