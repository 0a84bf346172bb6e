"""Structured output: specs -> strict JSON Schema request formats, replies -> validated values,
typed columns; the fallback triggers on the fake API; a real grammar-enforcing model."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from enum import Enum
from typing import Any, Literal, Optional

import jsonschema
import pandas as pd
import pytest
from pydantic import BaseModel, Field
from typing_extensions import NotRequired, TypedDict

from oxen_notebook import BadRequestError, MissingDependencyError, ParameterError, SchemaError, Session
from oxen_notebook._schema import OutputSchema, json_schema_support, refuses_json_schema
from tests.conftest import TEST_KEY
from tests.fake_api import NO_JSON_SCHEMA_MODEL, FakeAPI, Script

# -- the specs (module level: dataclass and TypedDict annotations resolve here) ------------------


class Person(BaseModel):
    name: str
    age: int


class Address(BaseModel):
    city: str
    country: str = Field(description="ISO 3166 alpha-2 code")


class Employee(BaseModel):
    name: str
    home: Address = Field(description="where they live")
    offices: list[Address]


class Contact(BaseModel):
    full_name: str = Field(alias="fullName")
    address: Address = Field(description="postal address")


class Profile(BaseModel):
    name: str
    nickname: str | None = None
    age: Optional[int]  # noqa: UP045 (the typing spelling is part of what is tested)


class Color(Enum):
    RED = "red"
    GREEN = "green"


class Review(BaseModel):
    label: Literal["spam", "ham"]
    color: Color
    score: float
    flagged: bool
    tags: list[str]


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str | None = None


class Movie(TypedDict):
    title: str
    year: int
    rating: NotRequired[float]


class Node(BaseModel):
    value: int
    next: Node | None = None


BOOK = {
    "title": "Book",
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "pages": {"type": "integer"},
        "genre": {"enum": ["fiction", "non-fiction"]},
        "isbn": {"type": "string"},
    },
    "required": ["title", "pages", "genre"],
}
BOOKS = {"type": "array", "items": BOOK}


def assert_strict(schema: dict[str, Any]) -> None:
    """What strict json_schema response formats require, everywhere in the schema."""
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"  # an object root

    def visit(node: Any, path: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                visit(item, f"{path}[{i}]")
            return
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            assert set(node) == {"$ref"}, f"{path}: siblings beside $ref"
            name = node["$ref"].removeprefix("#/$defs/")
            assert name in schema.get("$defs", {}), f"{path}: dangling {node['$ref']}"
        if node.get("type") == "object" or "properties" in node:
            assert node["additionalProperties"] is False, path
            assert node["required"] == list(node["properties"]), path
        assert node.get("default", 0) is not None, f"{path}: a None default"
        for key, value in node.items():
            if key == "properties":
                for name, sub in value.items():
                    visit(sub, f"{path}.{name}")
            elif key not in ("enum", "const", "required", "default"):
                visit(value, f"{path}/{key}")

    visit(schema, "$")
    for name in schema.get("$defs", {}):  # every definition is used
        assert f'"#/$defs/{name}"' in json.dumps({k: v for k, v in schema.items()}), name


def check_request_format(spec: Any, name: str) -> OutputSchema:
    schema = OutputSchema.from_spec(spec)
    fmt = schema.response_format()
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == name and fmt["json_schema"]["strict"] is True
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name)
    assert_strict(fmt["json_schema"]["schema"])
    fmt["json_schema"]["schema"]["properties"].clear()  # a fresh copy each time
    assert schema.json_schema["properties"]
    return schema


def strict_accepts(schema: OutputSchema, text: str) -> None:
    """The reply the test parses is one that the strict schema (what the server enforces) allows."""
    jsonschema.validate(json.loads(text), schema.json_schema)


# -- each kind of spec ---------------------------------------------------------------------------


def test_pydantic_model():
    schema = check_request_format(Person, "Person")
    assert schema.json_schema == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    text = '{"name": "Ada Lovelace", "age": 36}'
    strict_accepts(schema, text)
    fenced = f"Here is {{the person}}:\n```json\n{text}\n```\nDone {{yes}}."  # braces outside the fence
    for reply in (
        text,
        f"\n  {text}\n",
        f"```json\n{text}\n```",
        f"Here it is:\n```\n{text}\n```\nDone.",
        fenced,
    ):
        assert schema.parse(reply) == Person(name="Ada Lovelace", age=36)
    assert schema.parse(f"Sure! {text} Hope that helps.") == Person(name="Ada Lovelace", age=36)
    assert schema.columns() == {"name": "string", "age": "Int64"}


def test_nested_models_inline_a_described_ref_and_keep_the_others_in_defs():
    schema = check_request_format(Employee, "Employee")
    strict = schema.json_schema
    home = strict["properties"]["home"]
    assert home["description"] == "where they live" and home["properties"]["city"] == {"type": "string"}
    assert strict["properties"]["offices"] == {"items": {"$ref": "#/$defs/Address"}, "type": "array"}
    assert strict["$defs"]["Address"]["properties"]["country"]["description"] == "ISO 3166 alpha-2 code"
    text = """```json
{"name": "Grace", "home": {"city": "Arlington", "country": "US"},
 "offices": [{"city": "Washington", "country": "US"}, {"city": "Philadelphia", "country": "US"}]}
```"""
    strict_accepts(schema, text.strip("`json\n"))
    value = schema.parse(text)
    assert isinstance(value, Employee) and isinstance(value.offices[1], Address)
    assert value.home == Address(city="Arlington", country="US") and value.offices[1].city == "Philadelphia"
    assert schema.columns() == {"name": "string", "home": "object", "offices": "object"}


def test_aliases_and_a_definition_only_used_with_a_description():
    schema = check_request_format(Contact, "Contact")
    assert "$defs" not in schema.json_schema  # Address was inlined beside its description, then pruned
    assert list(schema.json_schema["properties"]) == ["fullName", "address"]
    value = schema.parse('{"fullName": "Ada King", "address": {"city": "London", "country": "GB"}}')
    assert value.full_name == "Ada King" and value.address.country == "GB"
    assert schema.dump(value) == {"fullName": "Ada King", "address": {"city": "London", "country": "GB"}}
    assert schema.columns() == {"full_name": "string", "address": "object"}
    assert schema.frame_columns([value])["full_name"].tolist() == ["Ada King"]


def test_recursive_model_keeps_its_definition():
    schema = check_request_format(Node, "Node")
    assert schema.json_schema["properties"]["next"] == {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}
    text = '{"value": 1, "next": {"value": 2, "next": null}}'
    strict_accepts(schema, text)
    assert schema.parse(text) == Node(value=1, next=Node(value=2))


def test_optional_fields_become_required_and_nullable():
    schema = check_request_format(Profile, "Profile")
    props = schema.json_schema["properties"]
    assert props["nickname"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}  # no "default": null
    assert props["age"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    text = '{"name": "Ada", "nickname": null, "age": null}'
    strict_accepts(schema, text)
    assert schema.parse(text) == Profile(name="Ada", nickname=None, age=None)
    assert schema.parse('{"name": "Ada", "age": 36}') == Profile(name="Ada", age=36)  # json_object replies
    with pytest.raises(jsonschema.ValidationError):  # the strict schema requires every key
        strict_accepts(schema, '{"name": "Ada", "age": 36}')
    assert schema.columns() == {"name": "string", "nickname": "string", "age": "Int64"}


def test_literal_and_enum_fields():
    schema = check_request_format(Review, "Review")
    props = schema.json_schema["properties"]
    assert props["label"] == {"enum": ["spam", "ham"], "type": "string"}
    assert schema.json_schema["$defs"]["Color"]["enum"] == ["red", "green"]
    text = '{"label": "ham", "color": "green", "score": 0.75, "flagged": false, "tags": ["a", "b"]}'
    strict_accepts(schema, text)
    value = schema.parse(text)
    assert value.color is Color.GREEN and value.label == "ham" and value.tags == ["a", "b"]
    assert schema.columns() == {
        "label": "category", "color": "category", "score": "Float64", "flagged": "boolean", "tags": "object"
    }  # fmt: skip
    with pytest.raises(SchemaError) as info:
        schema.parse(text.replace('"green"', '"blue"'))
    assert str(info.value).startswith("the reply does not match Review: color: Input should be 'red' or")
    assert str(info.value).endswith('(got "blue")')


def test_dataclass():
    schema = check_request_format(Point, "Point")
    assert schema.json_schema["required"] == ["x", "y", "label"]
    text = ' {"x": 3, "y": 4.5, "label": "peak"}\n'
    strict_accepts(schema, text)
    assert schema.parse(text) == Point(3, 4.5, "peak")
    assert schema.dump(Point(3, 4.5)) == {"x": 3, "y": 4.5, "label": None}
    assert schema.columns() == {"x": "Int64", "y": "Float64", "label": "string"}


def test_typeddict_gives_a_dict():
    schema = check_request_format(Movie, "Movie")
    assert schema.json_schema["required"] == ["title", "year", "rating"]
    text = '```json\n{"title": "Alien", "year": 1979, "rating": 8.5}\n```'
    value = schema.parse(text)
    assert value == {"title": "Alien", "year": 1979, "rating": 8.5} and type(value) is dict
    assert schema.parse('{"title": "Alien", "year": "1979"}') == {"title": "Alien", "year": 1979}
    assert schema.columns() == {"title": "string", "year": "Int64", "rating": "Float64"}


def test_a_list_is_wrapped_in_an_object_and_unwrapped_on_parse():
    schema = check_request_format(list[Person], "list_of_Person")
    strict = schema.json_schema
    assert strict["required"] == ["items"] and strict["properties"]["items"]["type"] == "array"
    assert strict["properties"]["items"]["items"] == {"$ref": "#/$defs/Person"}
    text = '{"items": [{"name": "Ada", "age": 36}, {"name": "Alan", "age": 41}]}'
    strict_accepts(schema, text)
    people = [Person(name="Ada", age=36), Person(name="Alan", age=41)]
    assert schema.parse(text) == people
    assert schema.parse('[{"name": "Ada", "age": 36}, {"name": "Alan", "age": 41}]') == people  # bare
    assert schema.dump(people) == [{"name": "Ada", "age": 36}, {"name": "Alan", "age": 41}]
    assert schema.columns() == {"name": "string", "age": "Int64"}  # of one item
    with pytest.raises(SchemaError) as info:
        schema.parse('{"items": [{"name": "Ada", "age": 36}, {"name": "Alan", "age": "old"}]}')
    assert str(info.value).startswith("the reply does not match list[Person]: items[1].age: ")
    assert info.value.errors[0]["loc"] == "items[1].age"


def test_json_schema_dict():
    schema = check_request_format(BOOK, "Book")
    props = schema.json_schema["properties"]
    assert schema.json_schema["required"] == ["title", "pages", "genre", "isbn"]
    assert props["isbn"] == {"type": ["string", "null"]}  # optional: may be unknown, not made up
    assert props["genre"] == {"enum": ["fiction", "non-fiction"]}  # required: unchanged
    text = '{"title": "Dune", "pages": 412, "genre": "fiction", "isbn": null}'
    strict_accepts(schema, text)
    assert schema.parse(text) == {"title": "Dune", "pages": 412, "genre": "fiction", "isbn": None}
    assert schema.parse('{"title": "Dune", "pages": 412, "genre": "fiction"}')["pages"] == 412
    assert schema.columns() == {"title": "string", "pages": "Int64", "genre": "category", "isbn": "string"}
    assert (
        OutputSchema.from_spec({"type": "object", "properties": {"a": {"type": "string"}}}).name == "schema"
    )


def test_json_schema_dict_array():
    schema = check_request_format(BOOKS, "schema")
    text = '{"items": [{"title": "Dune", "pages": 412, "genre": "fiction", "isbn": "978-0441013593"}]}'
    strict_accepts(schema, text)
    assert schema.parse(text) == [
        {"title": "Dune", "pages": 412, "genre": "fiction", "isbn": "978-0441013593"}
    ]
    with pytest.raises(SchemaError) as info:
        schema.parse('{"items": [{"title": "Dune", "genre": "poetry"}]}')
    assert [e["loc"] for e in info.value.errors] == ["items[0].pages", "items[0].genre"]
    assert str(info.value) == (
        "the reply does not match the schema: items[0].pages: 'pages' is a required property; 2 errors"
    )


# -- failures ------------------------------------------------------------------------------------


def test_invalid_values_name_the_first_field_and_keep_every_error_and_the_text():
    schema = OutputSchema.from_spec(Person)
    text = '```json\n{"name": 7, "age": "thirty-six"}\n```'
    with pytest.raises(SchemaError) as info:
        schema.parse(text)
    error = info.value
    assert str(error) == (
        "the reply does not match Person: name: Input should be a valid string (got 7); 2 errors"
    )
    assert "\n" not in str(error)
    assert [(e["loc"], e["input"]) for e in error.errors] == [("name", 7), ("age", "thirty-six")]
    assert error.errors[1]["msg"].startswith("Input should be a valid integer")
    assert error.text == text


def test_missing_field_and_the_repair_prompt():
    schema = OutputSchema.from_spec(Employee)
    with pytest.raises(SchemaError) as info:
        schema.parse('{"name": "Grace", "home": {"city": "Arlington"}, "offices": [{}]}')
    error = info.value
    assert str(error) == "the reply does not match Employee: home.country: Field required; 3 errors"
    assert [e["loc"] for e in error.errors] == ["home.country", "offices[0].city", "offices[0].country"]
    assert error.errors[0]["input"] == {"city": "Arlington"}  # the object the field is missing from
    prompt = schema.repair_prompt(error)
    assert prompt.splitlines()[1:-1] == [f"- {e['loc']}: Field required" for e in error.errors]
    assert prompt.endswith("Reply with the corrected JSON only, nothing else.")


def test_repair_prompt_lists_at_most_five_errors():
    schema = OutputSchema.from_spec(list[Person])
    rows = ", ".join(f'{{"name": "p{i}", "age": "x{i}"}}' for i in range(8))
    with pytest.raises(SchemaError) as info:
        schema.parse(f'{{"items": [{rows}]}}')
    assert len(info.value.errors) == 8 and str(info.value).endswith("; 8 errors")
    lines = schema.repair_prompt(info.value).splitlines()
    assert lines[1].startswith("- items[0].age: Input should be a valid integer") and lines[1].endswith(
        '(got "x0")'
    )
    assert lines[5].startswith("- items[4].age") and lines[6] == "- and 3 more" and len(lines) == 8


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ('{"name": "Ada", "age": 36', "the reply is not valid JSON for Person: Expecting"),
        ("I cannot help with that.", "the reply is not valid JSON for Person: Expecting value"),
        ("   ", "the reply is empty, not JSON for Person"),
    ],
)
def test_text_that_is_not_json(text: str, start: str):
    with pytest.raises(SchemaError) as info:
        OutputSchema.from_spec(Person).parse(text)
    assert str(info.value).startswith(start) and "\n" not in str(info.value)
    assert info.value.text == text and len(info.value.errors) == 1 and info.value.errors[0]["loc"] == ""


def test_a_wrong_root_type():
    with pytest.raises(SchemaError, match=r"does not match Person: Input should be a valid dictionary"):
        OutputSchema.from_spec(Person).parse('["Ada", 36]')


@pytest.mark.parametrize(
    "spec",
    [int, str, Person(name="a", age=1), list[int], dict[str, int], "Person", list, {"type": "string"}],
)
def test_bad_specs_say_what_is_accepted(spec: Any):
    with pytest.raises(ParameterError) as info:
        OutputSchema.from_spec(spec)
    assert "expected a pydantic model, a dataclass, a TypedDict, list[...]" in str(info.value)
    assert "\n" not in str(info.value)


def test_an_invalid_json_schema_dict_is_a_parameter_error():
    with pytest.raises(ParameterError, match="not a valid JSON Schema: 'nope' is not valid"):
        OutputSchema.from_spec({"type": "object", "properties": {"a": {"type": "nope"}}})


def test_a_json_schema_dict_needs_jsonschema(monkeypatch: pytest.MonkeyPatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jsonschema" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match="pip install jsonschema"):
        OutputSchema.from_spec(BOOK)
    assert OutputSchema.from_spec(Person).name == "Person"  # Python types need only pydantic


def test_names_are_valid_and_an_output_schema_passes_through():
    class Weird(BaseModel):
        a: int

    Weird.__name__ = "Wéird Näme!" + "x" * 80
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", OutputSchema.from_spec(Weird).name)
    assert OutputSchema.from_spec({**BOOK, "title": "Book list (v2)"}).name == "Book_list__v2"
    schema = OutputSchema.from_spec(Person)
    assert OutputSchema.from_spec(schema) is schema and repr(schema) == "OutputSchema('Person')"


# -- instruction, dump, columns ----------------------------------------------------------------


def test_instruction_carries_the_compact_schema():
    schema = OutputSchema.from_spec(list[Person])
    text = schema.instruction()
    prefix = "Reply with one JSON object that matches this JSON Schema: "
    assert text.startswith(prefix) and "\n" not in text and ": " not in text[len(prefix) :]
    assert json.loads(text[len(prefix) :]) == schema.json_schema


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        (Person, Person(name="Ada", age=36)),
        (Contact, Contact(fullName="A", address=Address(city="L", country="GB"))),
        (
            Employee,
            Employee(
                name="G", home=Address(city="A", country="US"), offices=[Address(city="B", country="FR")]
            ),
        ),
        (Review, Review(label="spam", color=Color.RED, score=1.5, flagged=True, tags=[])),
        (Point, Point(1, 2.0)),
        (Movie, {"title": "Alien", "year": 1979}),
        (list[Person], [Person(name="Ada", age=36)]),
        (BOOK, {"title": "Dune", "pages": 412, "genre": "fiction", "isbn": None}),
        (Node, Node(value=1, next=Node(value=2))),
    ],
)
def test_dump_round_trips_through_parse(spec: Any, value: Any):
    schema = OutputSchema.from_spec(spec)
    dumped = schema.dump(value)
    assert json.loads(json.dumps(dumped)) == dumped  # JSON-able
    assert schema.parse(json.dumps(dumped)) == value


def test_frame_columns_are_typed_with_na_for_failed_rows():
    schema = OutputSchema.from_spec(Review)
    rows = [
        Review(label="spam", color=Color.RED, score=0.5, flagged=True, tags=["x"]),
        None,
        Review(label="ham", color=Color.GREEN, score=2, flagged=False, tags=[]),
    ]
    columns = schema.frame_columns(rows, index=pd.Index([10, 11, 12]))
    frame = pd.DataFrame(columns)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == schema.columns()
    assert list(frame.index) == [10, 11, 12]
    assert frame.loc[10, "label"] == "spam" and frame.loc[12, "color"] == "green"  # Enum -> its value
    assert list(frame["color"].cat.categories) == ["green", "red"]
    assert frame.loc[12, "score"] == 2.0 and bool(frame.loc[10, "flagged"]) is True
    assert frame.loc[10, "tags"] == ["x"]
    assert frame.loc[11].isna().all()


def test_frame_columns_from_dicts_and_dataclasses():
    books = OutputSchema.from_spec(BOOK)
    frame = pd.DataFrame(books.frame_columns([{"title": "Dune", "pages": 412, "genre": "fiction"}, None]))
    assert list(frame.dtypes.astype(str)) == ["string", "Int64", "category", "string"]
    assert frame["pages"].tolist()[0] == 412 and pd.isna(frame["pages"][1]) and pd.isna(frame["isbn"][0])
    points = pd.DataFrame(
        OutputSchema.from_spec(Point).frame_columns([Point(1, 2.5, None), Point(2, 3.0, "b")])
    )
    assert points["x"].dtype == "Int64" and points["label"].tolist()[1] == "b" and pd.isna(points["label"][0])


# -- the fallback triggers (fake API) --------------------------------------------------------------


def test_a_model_without_json_schema_refuses_it_and_takes_the_json_object_fallback(fake_api: FakeAPI):
    schema = OutputSchema.from_spec(Person)
    s = Session(model=NO_JSON_SCHEMA_MODEL, base_url=fake_api.base_url, api_key=TEST_KEY, timeout=5.0)
    assert json_schema_support(s.model_info()["request_schema"]) is False  # trigger 1: its schema
    assert (
        json_schema_support(
            Session(base_url=fake_api.base_url, api_key=TEST_KEY).model_info()["request_schema"]
        )
        is None
    )
    fake_api.enqueue(Script(text='```json\n{"name": "Ada Lovelace", "age": 36}\n```'))
    with pytest.raises(BadRequestError) as info:  # trigger 2: its 400
        s.ask("Ada Lovelace, born 1815, died at 36.", response_format=schema.response_format(), history=False)
    assert refuses_json_schema(info.value) and "response_format" in str(info.value)
    reply = s.ask(
        f"Ada Lovelace, born 1815, died at 36.\n\n{schema.instruction()}",
        response_format={"type": "json_object"},
        history=False,
    )
    assert schema.parse(reply.text) == Person(name="Ada Lovelace", age=36)  # the queued script
    sent = fake_api.chat_requests()
    assert sent[0]["response_format"]["json_schema"]["schema"] == schema.json_schema
    assert sent[1]["response_format"] == {"type": "json_object"}


def test_other_errors_are_not_a_refusal(fake_api: FakeAPI):
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=5.0)
    fake_api.enqueue(
        Script(status=400, error={"error": {"type": "invalid_params", "detail": "temperature too high"}})
    )
    with pytest.raises(BadRequestError) as info:
        s.ask("hi", history=False)
    assert not refuses_json_schema(info.value)
    fake_api.enqueue(
        Script(
            status=400, error={"error": {"type": "invalid_params", "detail": "unsupported response_format"}}
        )
    )
    with pytest.raises(BadRequestError) as info:
        s.ask("hi", history=False)
    assert refuses_json_schema(info.value)
    assert json_schema_support(
        {"properties": {"response_format": {"properties": {"type": {"enum": ["json_schema"]}}}}}
    )
    assert json_schema_support({"properties": {"response_format": {"type": "object"}}}) is None
    assert json_schema_support({"properties": {"response_format": "object"}}) is None
    variants = [{"properties": {"type": {"const": kind}}} for kind in ("text", "json_object", "json_schema")]
    assert json_schema_support({"properties": {"response_format": {"oneOf": variants}}}) is True
    assert json_schema_support({"properties": {"response_format": {"anyOf": variants[:2]}}}) is False
    assert json_schema_support({"properties": {"response_format": {"anyOf": [*variants[:2], {}]}}}) is None


# -- a real grammar-enforcing model ------------------------------------------------------------------


@pytest.mark.local
@pytest.mark.parametrize(
    ("spec", "prompt"),
    [
        (Person, "Extract the person as JSON: Ada Lovelace, born 1815, died at 36."),
        (list[Person], "Extract the people as JSON: Ada Lovelace died at 36; Alan Turing died at 41."),
    ],
)
def test_the_local_model_writes_what_parse_accepts(spec: Any, prompt: str):
    pytest.importorskip("llama_cpp", reason="the local extra is not installed; CI installs it")
    schema = OutputSchema.from_spec(spec)
    reply = Session(model="local").ask(
        prompt, response_format=schema.response_format(), max_tokens=120, temperature=0, history=False
    )
    assert reply.finish_reason == "stop", reply.text
    value = schema.parse(reply.text)
    people = value if isinstance(value, list) else [value]
    assert people and all(isinstance(p, Person) for p in people)
    assert json.loads(reply.text).keys() == ({"items"} if isinstance(value, list) else {"name", "age"})


# -- hostile and unusual specs and replies ---------------------------------------------------------

TREE = {
    "title": "Tree",
    "type": "object",
    "properties": {
        "value": {"type": "integer"},
        "child": {"$ref": "#/$defs/tree", "description": "the subtree under this one"},
    },
    "required": ["value"],
    "$defs": {
        "tree": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "child": {"$ref": "#/$defs/tree", "description": "the subtree under this one"},
            },
            "required": ["value"],
        }
    },
}


class Branch(BaseModel):
    value: int
    children: list[Branch] = Field(description="the branches under this one")
    parent: Branch | None = Field(None, description="the branch above")
    twin: Branch = Field(description="a described self-reference")


def test_a_self_reference_with_a_description_is_built_and_keeps_the_description():
    """A $ref beside a description is inlined (strict formats take no siblings beside a $ref); a
    $ref to the definition being inlined keeps its description beside a one-item anyOf."""
    tree = check_request_format(TREE, "Tree")
    child = tree.json_schema["properties"]["child"]
    assert child["anyOf"][1] == {"type": "null"}  # an optional property of a dict: nullable
    inlined = child["anyOf"][0]
    assert inlined["description"] == "the subtree under this one"
    assert inlined["properties"]["child"]["anyOf"][0] == {
        "anyOf": [{"$ref": "#/$defs/tree"}],
        "description": "the subtree under this one",
    }
    text = '{"value": 1, "child": {"value": 2, "child": {"value": 3, "child": null}}}'
    strict_accepts(tree, text)
    assert tree.parse(text)["child"]["child"]["value"] == 3

    root = {"type": "object", "properties": {"next": {"$ref": "#", "description": "the rest"}}}
    chain = OutputSchema.from_spec(root)  # "#", the root itself, is a recursion too
    assert chain.json_schema["properties"]["next"]["anyOf"][0] == {
        "anyOf": [{"$ref": "#"}],
        "description": "the rest",
    }
    assert chain.parse('{"next": {"next": null}}') == {"next": {"next": None}}

    branch = check_request_format(Branch, "Branch")
    assert branch.json_schema["properties"]["twin"] == {
        "anyOf": [{"$ref": "#/$defs/Branch"}],
        "description": "a described self-reference",
    }
    leaf = '{"value": 3, "children": [], "parent": null, "twin": null}'
    with pytest.raises(SchemaError):  # twin is required and not nullable: no finite Branch exists
        branch.parse(leaf)


def _nested(depth: int) -> str:
    return '{"value": 1, "child": ' * depth + '{"value": 0}' + "}" * depth


@pytest.mark.parametrize(("spec", "depth"), [(TREE, 900), (TREE, 100_000), (Node, 100_000)])
def test_a_reply_nested_too_deeply_is_a_schema_error(spec: Any, depth: int):
    """Python's JSON reader stops near 1,000 levels, jsonschema's validator near 300: either is a
    SchemaError (so the reply is repaired or recorded), never a raw RecursionError."""
    text = _nested(depth)
    with pytest.raises(SchemaError) as info:
        OutputSchema.from_spec(spec).parse(text.replace('"child"', '"next"') if spec is Node else text)
    assert str(info.value).endswith(
        "the JSON is nested too deeply to read; a reply that deep is not an answer."
    )
    assert "\n" not in str(info.value) and info.value.errors


class PlainMovie(typing.TypedDict):
    """A film."""

    title: str
    year: int


class PlainShelf(typing.TypedDict, total=False):
    name: typing.Required[str]
    films: list[PlainMovie]
    best: PlainMovie | None


def test_a_typing_typeddict_is_accepted_on_every_python():
    """``from typing import TypedDict`` is what users write; pydantic takes only typing_extensions'
    before Python 3.12, so the schema rebuilds it (nested ones too)."""
    schema = check_request_format(PlainShelf, "PlainShelf")
    strict = schema.json_schema
    assert strict["$defs"]["PlainMovie"]["description"] == "A film."
    assert strict["properties"]["films"] == {"items": {"$ref": "#/$defs/PlainMovie"}, "type": "array"}
    text = '{"name": "mine", "films": [{"title": "Alien", "year": "1979"}], "best": null}'
    value = schema.parse(text)
    assert value == {"name": "mine", "films": [{"title": "Alien", "year": 1979}], "best": None}
    assert type(value) is dict
    assert schema.parse('{"name": "empty"}') == {"name": "empty"}  # total=False: the rest may be missing
    with pytest.raises(SchemaError, match=r"films\[0\]\.year"):
        schema.parse('{"name": "x", "films": [{"title": "A", "year": "soon"}]}')
    assert schema.columns() == {"name": "string", "films": "object", "best": "object"}
    assert OutputSchema.from_spec(list[PlainMovie]).parse('[{"title": "A", "year": 1}]') == [
        {"title": "A", "year": 1}
    ]
