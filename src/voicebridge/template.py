"""Read the SAM template (``template.yaml``) so tests and ``voicebridge replay`` share the deployed schema.

CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!Sub``...) are parsed into their long-form dicts
(``{"Ref": "X"}``, ``{"Fn::GetAtt": ["X", "Arn"]}``), so the result is what CloudFormation itself sees.
PyYAML is a development dependency only: it is imported inside the functions, never by the Lambda.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "CONTACT_TABLE_RESOURCE",
    "TEMPLATE_PATH",
    "TemplateError",
    "contact_table_create_kwargs",
    "contact_table_ttl_attribute",
    "load_template",
    "loads_template",
]

# Editable installs only (``pip install -e``): the repository root is two levels above this package.
TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
CONTACT_TABLE_RESOURCE = "ContactTable"

# Short tags whose long form is not simply "Fn::<Tag>".
_SPECIAL_TAGS = {"Ref": "Ref", "Condition": "Condition"}


class TemplateError(ValueError):
    """The template lacks something a caller needs, or holds it in a form that cannot be used as is."""


def _cfn_loader() -> Any:
    """A SafeLoader subclass that turns every ``!Tag`` into CloudFormation's long form."""
    import yaml

    class CfnLoader(yaml.SafeLoader):
        """SafeLoader that also accepts CloudFormation short-form intrinsic functions."""

    def construct_tag(loader: Any, tag_suffix: str, node: Any) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if tag_suffix in _SPECIAL_TAGS:
            return {_SPECIAL_TAGS[tag_suffix]: value}
        if tag_suffix == "GetAtt" and isinstance(value, str):
            # "Resource.Attribute" (the attribute itself may contain dots, e.g. Endpoint.Address).
            resource, _, attribute = value.partition(".")
            return {"Fn::GetAtt": [resource, attribute]}
        if tag_suffix == "GetAZs" and value is None:
            value = ""
        return {f"Fn::{tag_suffix}": value}

    # Covers !Ref, !GetAtt, !Sub, !If, !Equals, !Not, !And, !Or, !Select, !Split, !Join, !FindInMap,
    # !ImportValue, !GetAZs, !Condition and any other tag (!Base64, !Cidr, !Length...) the same way.
    CfnLoader.add_multi_constructor("!", construct_tag)
    return CfnLoader


def loads_template(text: str) -> dict[str, Any]:
    """Parse template text (YAML with CloudFormation short tags) into a dict."""
    import yaml

    # yaml.load with a SafeLoader subclass: no arbitrary Python objects.
    document = yaml.load(text, Loader=_cfn_loader())
    if not isinstance(document, dict):
        raise TemplateError("a CloudFormation template must be a YAML mapping")
    return document


def load_template(path: Path | None = None) -> dict[str, Any]:
    """Parse ``path`` (default: the repository's ``template.yaml``) with CloudFormation short tags."""
    return loads_template((path or TEMPLATE_PATH).read_text(encoding="utf-8"))


def _contact_table_properties(template: dict[str, Any] | None) -> dict[str, Any]:
    document = template if template is not None else load_template()
    resource = document.get("Resources", {}).get(CONTACT_TABLE_RESOURCE)
    if not isinstance(resource, dict) or resource.get("Type") != "AWS::DynamoDB::Table":
        raise TemplateError(f"template has no AWS::DynamoDB::Table resource named {CONTACT_TABLE_RESOURCE}")
    properties = resource.get("Properties")
    if not isinstance(properties, dict):
        raise TemplateError(f"{CONTACT_TABLE_RESOURCE} has no Properties")
    return properties


def _literal(value: Any, where: str) -> Any:
    """``value`` unchanged, provided it holds no intrinsic function (which a local table cannot resolve)."""
    if isinstance(value, dict):
        if any(key == "Ref" or key == "Condition" or key.startswith("Fn::") for key in value):
            raise TemplateError(f"{CONTACT_TABLE_RESOURCE} {where} uses an intrinsic function: {value!r}")
        return {key: _literal(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


def contact_table_create_kwargs(
    template: dict[str, Any] | None = None, table_name: str = "voicebridge-contacts"
) -> dict[str, Any]:
    """Keyword arguments for boto3 ``create_table`` matching the template's contact table.

    KeySchema, AttributeDefinitions and any secondary indexes come from the template; billing is
    PAY_PER_REQUEST (as deployed). TTL is not part of ``create_table``: see :func:`contact_table_ttl_attribute`.
    """
    properties = _contact_table_properties(template)
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": _literal(properties.get("KeySchema"), "KeySchema"),
        "AttributeDefinitions": _literal(properties.get("AttributeDefinitions"), "AttributeDefinitions"),
        "BillingMode": "PAY_PER_REQUEST",
    }
    if not kwargs["KeySchema"] or not kwargs["AttributeDefinitions"]:
        raise TemplateError(f"{CONTACT_TABLE_RESOURCE} needs KeySchema and AttributeDefinitions")
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if index_kind in properties:
            kwargs[index_kind] = _literal(properties[index_kind], index_kind)
    return kwargs


def contact_table_ttl_attribute(template: dict[str, Any] | None = None) -> str:
    """The attribute the contact table's DynamoDB TTL reads (epoch seconds)."""
    properties = _contact_table_properties(template)
    specification = properties.get("TimeToLiveSpecification")
    name = specification.get("AttributeName") if isinstance(specification, dict) else None
    if not isinstance(name, str) or not name:
        raise TemplateError(f"{CONTACT_TABLE_RESOURCE} has no TimeToLiveSpecification.AttributeName")
    return name
