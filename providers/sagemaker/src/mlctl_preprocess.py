# Written by mlctl (providers/sagemaker/src/mlctl_preprocess.py); do not edit: mlctl packs this
# file as the first container of a SageMaker inference pipeline in front of a built-in
# algorithm. Python standard library only.
#
# It turns the raw feature columns a client sends (JSON or CSV, the request shapes mlctl's own
# server reads) into the encoded, header-less CSV the algorithm container reads: the model's
# fitted preprocessor (`preprocessor.json`, the `mlctl_ml::preprocess::Preprocessor` mlctl fitted
# on the training rows) one-hot encodes categorical columns and fills a missing number with the
# training mean, exactly as mlctl's local server does. Numbers are written as Rust's `{}` writes
# an f64 (shortest round trip, no exponent), so the bytes are the training channel's.
#
# The input signature is enforced as `mlctl serve` enforces it (MLCTL_ENFORCE=strict, the
# default): a missing column, a wrong type, a missing value where training had none or an
# unseen category is a 400 with mlctl's error body {"error_code", "message"}; columns the model
# does not take are ignored. With MLCTL_ENFORCE=off such a value becomes a missing value, which
# the preprocessor fills.
#
# SageMaker's scikit-learn container calls model_fn and transform_fn. For tests and by hand:
#   python3 mlctl_preprocess.py PREPROCESSOR.json CONTENT-TYPE [strict|off] < body
# prints the encoded CSV (exit 0) or the error body (exit 1).

import csv
import io
import json
import os
import re
import sys

FORMAT = "mlctl-preprocessor"
FORMAT_VERSION = 1
SHAPES = "`instances`, `inputs`, `dataframe_split` or `dataframe_records`"
MISSING_TEXT = ("", "NaN", "nan", "NA", "N/A", "null", "NULL", "None")
# The decimal numbers Rust's `str::parse::<f64>` reads (plus its inf/nan words, below).
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
NON_FINITE = re.compile(r"^[+-]?(inf|infinity|nan)$", re.IGNORECASE)
PREDICT_METHODS = "`predict` (the default) or `predict_proba`"


class RequestError(Exception):
    """A request the model cannot serve: `status` and mlctl's message."""

    def __init__(self, message, status=400):
        Exception.__init__(self, message)
        self.message = message
        self.status = status


ERROR_CODES = {400: "BAD_REQUEST", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


def error_body(e):
    return json.dumps(
        {"error_code": ERROR_CODES.get(e.status, "INTERNAL_ERROR"), "message": e.message},
        separators=(",", ":"),
        ensure_ascii=False,
    )


# ------------------------------------------------------------------------------------------
# Numbers and strings written as mlctl (Rust) writes them


def rust_float(x):
    """An f64 as Rust's `{}` writes it: the shortest digits that round-trip, no exponent."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    r = repr(float(x))
    sign = ""
    if r.startswith("-"):
        sign, r = "-", r[1:]
    mant, _, exp = r.partition("e")
    exp = int(exp) if exp else 0
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    point = len(ip) + exp
    while len(digits) > 1 and digits[0] == "0":
        digits, point = digits[1:], point - 1
    digits = digits.rstrip("0")
    if not digits:
        return sign + "0"
    if point <= 0:
        return sign + "0." + "0" * (-point) + digits
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return sign + digits[:point] + "." + digits[point:]


def number_text(x):
    """A number as mlctl's server names it in a category lookup (`2`, not `2.0`)."""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return rust_float(x)


def debug_str(s):
    """A string as Rust's `{:?}` quotes it."""
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\0":
            out.append("\\0")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def known(categories):
    shown = ", ".join(categories[:10])
    if len(categories) > 10:
        shown += ", and %d more" % (len(categories) - 10)
    return shown


# ------------------------------------------------------------------------------------------
# The model's inputs


class Column(object):
    def __init__(self, feature):
        self.name = feature["name"]
        self.category = feature["type"] == "category"
        self.categories = list(feature.get("categories", []))
        self.index = dict((c, i) for i, c in enumerate(self.categories))
        self.nullable = bool(feature["nullable"])
        self.fill = float(feature.get("fill", 0.0))
        self.integer = not self.category and feature.get("storage") == "int"

    def type_name(self):
        return "category" if self.category else "number"


class Preprocessor(object):
    def __init__(self, doc):
        if doc.get("format") != FORMAT:
            raise ValueError("not an mlctl preprocessor (format %r)" % doc.get("format"))
        if doc.get("formatVersion", 1) > FORMAT_VERSION:
            raise ValueError(
                "preprocessor format %s is newer than this script reads" % doc["formatVersion"]
            )
        self.columns = [Column(f) for f in doc["features"]]
        self.position = dict((c.name, j) for j, c in enumerate(self.columns))

    def names(self):
        return ", ".join(c.name for c in self.columns)

    def encode(self, raw):
        """One raw row (number, category index or None) -> the encoded values."""
        out = []
        for c, x in zip(self.columns, raw):
            if c.category:
                hot = [0.0] * len(c.categories)
                if x is not None:
                    hot[x] = 1.0
                out.extend(hot)
            else:
                out.append(c.fill if x is None else x)
        return out


def load(path):
    with open(path, "rb") as f:
        return Preprocessor(json.loads(f.read().decode("utf-8")))


# ------------------------------------------------------------------------------------------
# Parsing, as crates/serve/src/parse.rs parses


class Parser(object):
    def __init__(self, pre, lenient):
        self.pre = pre
        self.lenient = lenient
        self.rows = []
        self.warnings = 0

    def soft(self, message):
        if not self.lenient:
            raise RequestError(message)
        self.warnings += 1
        return None

    def number(self, r, c, x):
        if x != x or x in (float("inf"), float("-inf")):
            return self.soft("row %d, column `%s`: %s is not a finite number" % (r, c.name, rust_float(x)))
        if c.integer and x != int(x):
            return self.soft("row %d, column `%s`: expected an int, got %s" % (r, c.name, rust_float(x)))
        return x

    def category(self, r, c, text):
        k = c.index.get(text)
        if k is None:
            return self.soft(
                "row %d, column `%s`: unknown category %s (known: %s)"
                % (r, c.name, debug_str(text), known(c.categories))
            )
        return k

    def value(self, r, j, v):
        """One JSON value of column j in row r -> its raw value (None: missing)."""
        c = self.pre.columns[j]
        if v is None:
            if c.nullable:
                return None
            return self.soft(
                "row %d, column `%s`: missing value, and the model takes no missing values there"
                % (r, c.name)
            )
        if isinstance(v, bool):
            if c.category:
                return self.category(r, c, "true" if v else "false")
            return self.number(r, c, 1.0 if v else 0.0)
        if isinstance(v, (int, float)):
            x = float(v)
            if c.category:
                return self.category(r, c, number_text(x))
            return self.number(r, c, x)
        if isinstance(v, str):
            if c.category:
                return self.category(r, c, v)
            return self.soft(
                "row %d, column `%s`: expected a number, got the string %s" % (r, c.name, debug_str(v))
            )
        what = "a list" if isinstance(v, list) else "an object"
        raise RequestError("row %d, column `%s`: expected a %s, got %s" % (r, c.name, c.type_name(), what))

    def missing_row_column(self, r, j):
        c = self.pre.columns[j]
        if c.nullable:
            return None
        message = "row %d has no column `%s`; the model takes %s" % (r, c.name, self.pre.names())
        if not self.lenient:
            raise RequestError(message)
        self.warnings += 1
        return None

    def mapping(self, given):
        """Positions of given column names (None: not an input); refuses a missing column."""
        w = len(self.pre.columns)
        seen = [False] * w
        mapping, unknown = [], []
        for name in given:
            if not isinstance(name, str):
                raise RequestError("invalid `columns`: expected a list of strings")
            p = self.pre.position.get(name.strip())
            if p is not None:
                if seen[p]:
                    raise RequestError("column `%s` is given twice" % name)
                seen[p] = True
            else:
                unknown.append(name)
            mapping.append(p)
        missing = [j for j in range(w) if not seen[j] and not self.pre.columns[j].nullable]
        if missing and not self.lenient:
            extra = " (unknown columns given: %s)" % ", ".join(unknown) if unknown else ""
            raise RequestError(
                "missing column `%s`; the model takes %s%s"
                % (self.pre.columns[missing[0]].name, self.pre.names(), extra)
            )
        return mapping

    def row(self, v, mapping=None):
        r = len(self.rows)
        w = len(self.pre.columns)
        raw = [None] * w
        if isinstance(v, list):
            expected = w if mapping is None else len(mapping)
            if len(v) != expected:
                names = "the given `columns`" if mapping is not None else self.pre.names()
                raise RequestError(
                    "row %d has %d values; the model takes %d (%s)" % (r, len(v), expected, names)
                )
            for k, x in enumerate(v):
                j = k if mapping is None else mapping[k]
                if j is not None:
                    raw[j] = self.value(r, j, x)
        elif isinstance(v, dict):
            given = [False] * w
            for name, x in v.items():
                j = self.pre.position.get(name)
                if j is not None:
                    raw[j] = self.value(r, j, x)
                    given[j] = True
            for j in range(w):
                if not given[j]:
                    self.missing_row_column(r, j)
        else:
            if w != 1 or mapping is not None:
                raise RequestError(
                    "row %d: expected a list of %d values or an object with the columns %s"
                    % (r, w, self.pre.names())
                )
            raw[0] = self.value(r, 0, v)
        self.rows.append(raw)

    def row_list(self, v, mapping=None):
        if not isinstance(v, list):
            raise RequestError("invalid JSON: expected a list of rows")
        for row in v:
            self.row(row, mapping)

    def columns(self, v):
        w = len(self.pre.columns)
        lens = [None] * w
        cols = {}
        for name, values in v.items():
            j = self.pre.position.get(name)
            if j is None:
                continue
            if not isinstance(values, list):
                raise RequestError("invalid JSON: expected a list of values")
            cols[j] = values
            lens[j] = len(values)
        n = max([l for l in lens if l is not None] or [0])
        for j in range(w):
            c = self.pre.columns[j]
            if lens[j] is None and not c.nullable:
                message = "missing column `%s`; the model takes %s" % (c.name, self.pre.names())
                if not self.lenient:
                    raise RequestError(message)
                self.warnings += 1
            if lens[j] is not None and lens[j] != n:
                raise RequestError(
                    "column `%s` has %d values but another column has %d; columns must have the same length"
                    % (c.name, lens[j], n)
                )
        for r in range(n):
            raw = [None] * w
            for j, values in cols.items():
                raw[j] = self.value(r, j, values[r])
            self.rows.append(raw)

    def split(self, columns, data):
        if columns is None:
            self.row_list(data)
        else:
            if not isinstance(columns, list):
                raise RequestError("invalid `columns`: expected a list of strings")
            self.row_list(data, self.mapping(columns))

    def json(self, body):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestError("invalid JSON: the body is not UTF-8 (%s)" % e)

        def no_constants(name):
            raise ValueError("%s is not JSON" % name)

        try:
            doc = json.loads(text, parse_constant=no_constants)
        except ValueError as e:
            raise RequestError("invalid JSON: %s" % e)
        if isinstance(doc, list):
            self.row_list(doc)
            return
        if not isinstance(doc, dict):
            raise RequestError(
                "the JSON body must be an object with one of %s, or an array of rows" % SHAPES
            )
        allowed = ("instances", "inputs", "dataframe_split", "dataframe_records", "columns", "data", "index", "params")
        for k in doc:
            if k not in allowed:
                raise RequestError(
                    "invalid request: unknown field `%s`, expected one of %s; expected one of %s"
                    % (k, ", ".join("`%s`" % a for a in allowed), SHAPES)
                )
        given = sum(1 for k in ("instances", "inputs", "dataframe_split", "dataframe_records", "data") if k in doc)
        if given != 1:
            what = "has none of" if given == 0 else "has more than one of"
            raise RequestError("the JSON body %s %s" % (what, SHAPES))
        if "params" in doc:
            self.params(doc["params"])
        if "instances" in doc or "dataframe_records" in doc:
            self.row_list(doc.get("instances", doc.get("dataframe_records")))
        elif "inputs" in doc:
            v = doc["inputs"]
            if isinstance(v, dict):
                self.columns(v)
            else:
                self.row_list(v)
        elif "dataframe_split" in doc:
            s = doc["dataframe_split"]
            if not isinstance(s, dict) or "data" not in s:
                raise RequestError("invalid `dataframe_split`: missing field `data`")
            for k in s:
                if k not in ("columns", "data", "index"):
                    raise RequestError(
                        "invalid `dataframe_split`: unknown field `%s`, expected one of `columns`, `data`, `index`" % k
                    )
            self.split(s.get("columns"), s["data"])
        else:
            self.split(doc.get("columns"), doc["data"])

    def params(self, params):
        if not isinstance(params, dict):
            raise RequestError(
                'invalid `params`: expected an object; send an object such as {"predict_method": "predict_proba"}'
            )
        for k, v in params.items():
            if k != "predict_method":
                raise RequestError(
                    "unknown inference parameter `%s`; mlctl models take `predict_method`: %s" % (k, PREDICT_METHODS)
                )
            if v == "predict_proba":
                # The algorithm container answers its own way (XGBoost's probabilities, the
                # linear learner's scores): there is no mlctl answer to switch to here.
                raise RequestError(
                    "`params.predict_method: predict_proba` is answered by mlctl's own server only; on SageMaker the algorithm container's answer carries its scores"
                )
            if v != "predict":
                raise RequestError("`params.predict_method` is %s; use %s" % (json.dumps(v), PREDICT_METHODS))

    def csv_value(self, r, c, text):
        text = text.strip()
        if text in MISSING_TEXT:
            if c.nullable:
                return None
            return self.soft(
                "CSV row %d, column `%s`: missing value, and the model takes no missing values there" % (r, c.name)
            )
        if c.category:
            k = c.index.get(text)
            if k is None:
                return self.soft(
                    "CSV row %d, column `%s`: unknown category %s (known: %s)"
                    % (r, c.name, debug_str(text), known(c.categories))
                )
            return k
        if NUMBER.match(text):
            x = float(text)
            if x in (float("inf"), float("-inf")):
                return self.soft("CSV row %d, column `%s`: %s is not a finite number" % (r, c.name, debug_str(text)))
            if c.integer and x != int(x):
                return self.soft("CSV row %d, column `%s`: expected an int, got %s" % (r, c.name, text))
            return x
        if NON_FINITE.match(text):
            return self.soft("CSV row %d, column `%s`: %s is not a finite number" % (r, c.name, debug_str(text)))
        if text in ("true", "True", "TRUE"):
            return 1.0
        if text in ("false", "False", "FALSE"):
            return 0.0
        return self.soft("CSV row %d, column `%s`: expected a number, got %s" % (r, c.name, debug_str(text)))

    def looks_like_header(self, fields):
        names_a_column = False
        for f in fields:
            s = f.strip()
            if NUMBER.match(s) or NON_FINITE.match(s):
                return False
            names_a_column = names_a_column or s in self.pre.position
        return names_a_column

    def csv(self, body, header):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("invalid CSV: the body is not UTF-8 text")
        w = len(self.pre.columns)
        mapping = None
        first = True
        for rec in csv.reader(io.StringIO(text, newline="")):
            if not rec:
                continue
            if first:
                first = False
                if header if header is not None else self.looks_like_header(rec):
                    mapping = self.mapping(rec)
                    continue
            expected = w if mapping is None else len(mapping)
            r = len(self.rows)
            if len(rec) != expected:
                what = "the header has" if mapping is not None else "the model takes"
                raise RequestError(
                    "CSV row %d has %d values; %s %d (%s)" % (r, len(rec), what, expected, self.pre.names())
                )
            raw = [None] * w
            for k, field in enumerate(rec):
                j = k if mapping is None else mapping[k]
                if j is not None:
                    raw[j] = self.csv_value(r, self.pre.columns[j], field)
            self.rows.append(raw)


def content_format(content_type):
    """("json", None) or ("csv", header): the body format of a Content-Type; 415 otherwise."""
    ct = content_type or ""
    parts = ct.split(";")
    essence = parts[0].strip().lower()
    if essence == "application/json":
        return "json", None
    if essence in ("text/csv", "application/csv"):
        header = None
        for p in parts[1:]:
            k, _, v = p.partition("=")
            if k.strip().lower() == "header":
                header = v.strip().strip('"').lower() == "present"
        return "csv", header
    what = "`%s`" % essence if content_type else "(none)"
    raise RequestError(
        "unsupported content type %s: send `Content-Type: application/json` or `Content-Type: text/csv` (curl: -H 'Content-Type: application/json')"
        % what,
        415,
    )


def encode_request(pre, body, content_type, enforce="strict"):
    """A request body -> the encoded CSV (str) the algorithm reads. Raises RequestError."""
    fmt, header = content_format(content_type)
    p = Parser(pre, lenient=enforce != "strict")
    if fmt == "json":
        p.json(body)
    else:
        p.csv(body, header)
    if not p.rows:
        raise RequestError(
            "the request has no rows; send at least one row with the columns %s" % pre.names()
        )
    out = []
    for raw in p.rows:
        out.append(",".join(rust_float(x) for x in pre.encode(raw)))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------
# SageMaker's scikit-learn container


def model_fn(model_dir):
    name = os.environ.get("MLCTL_PREPROCESSOR", "preprocessor.json")
    return load(os.path.join(model_dir, name))


def transform_fn(model, request_body, content_type, accept):
    enforce = os.environ.get("MLCTL_ENFORCE", "strict")
    if isinstance(request_body, str):
        request_body = request_body.encode("utf-8")
    try:
        return respond(encode_request(model, request_body, content_type, enforce), 200, "text/csv")
    except RequestError as e:
        return respond(error_body(e), e.status, "application/json")


def respond(body, status, mimetype):
    try:
        from sagemaker_containers.beta.framework import worker
    except ImportError:
        worker = None
    if worker is not None:
        return worker.Response(response=body, status=status, mimetype=mimetype)
    if status != 200:
        raise RequestError(body, status)
    return body, mimetype


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write("usage: mlctl_preprocess.py PREPROCESSOR.json CONTENT-TYPE [strict|off] < body\n")
        return 2
    pre = load(argv[1])
    enforce = argv[3] if len(argv) == 4 else "strict"
    body = sys.stdin.buffer.read()
    try:
        sys.stdout.write(encode_request(pre, body, argv[2], enforce))
        return 0
    except RequestError as e:
        sys.stdout.write(error_body(e) + "\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
