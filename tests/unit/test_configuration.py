"""The registry, the postcode directory and the Lambda layer's pins: configuration that DevOps edit."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
from birthnotify.domain.csvsafe import spreadsheet_safe
from birthnotify.domain.postcodes import PostcodeDirectory, PostcodeDirectoryError
from birthnotify.domain.registry import PostcodeDirectoryColumns, Registry, RegistryError, load_registry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_TEXT = (ROOT / "config" / "registry.toml").read_text()


def registry_with(tmp_path: Path, text: str):
    path = tmp_path / "registry.toml"
    path.write_text(text)
    shutil.copy(ROOT / "config" / "authorities-england-wales.csv", tmp_path)
    return load_registry(path)


def test_the_shipped_registry_loads_and_routes_districts_to_their_county():
    registry = load_registry(ROOT / "config" / "registry.toml")
    assert registry.authority("E07000110").gss_code == "E10000016"  # Maidstone -> Kent
    assert registry.authority("E08000035").gss_code == "E08000035"  # Leeds is its own authority
    assert registry.authority("E07999999") is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"baby_nhs_number", "baby_date_of_birth", "baby_sex"',
            '"baby_nhs_number", "restricted", "baby_sex"',
            "unknown or unshareable fields ['restricted']",
        ),
        ("valid_from = 2026-04-01", "valid_from = 2026-03-01", "KENT-FH-2025 and KENT-FH-2026 overlap"),
        # An authority must be a current council that runs children's services, by the councils data.
        (
            'gss_code = "E08000035"',
            'gss_code = "E07000035"',
            "E07000035 (Derbyshire Dales District Council) is a district: Derbyshire County Council (E10000007) runs",
        ),
        (
            'gss_code = "E08000035"',
            'gss_code = "E10000006"',
            "E10000006 (Cumbria County Council) ended on 2023-04-01; its area is now served by E06000063 (Cumberland "
            "Council), E06000064 (Westmorland and Furness Council)",
        ),
        ('gss_code = "E08000035"', 'gss_code = "S12000036"', "S12000036 is in Scotland, outside this service"),
        ('gss_code = "E08000035"', 'gss_code = "E06000999"', "E06000999 is not a council in the councils data"),
        (
            'name = "Kent County Council"',
            'name = "Kent County Council"\ndistricts = ["E07000008"]',
            "places districts ['E07000008 (Cambridge City Council: E10000003)'] under another council",
        ),
        (
            'name = "Kent County Council"',
            'name = "Kent County Council"\ndistricts = [7000110]',
            "authorities.1.districts.0\n  Input should be a valid string",
        ),
        ('ods_code = "RX2"', 'ods_code = "RX1"', "duplicate trust ods_code: ['RX1']"),
        (
            'contact_emails = ["childrens-centres@leeds.example.gov.uk"]',
            'contact_emails = ["leeds"]',
            "'leeds' is not a valid email address",
        ),
        ('mesh_mailbox = "X26ABC2"', 'mesh_mailbox = "x26 abc2"', "'x26 abc2' is not a valid MESH mailbox id"),
        (
            'uploader_principals = ["arn:aws:iam::111111111111:role/northgate-maternity-upload"]',
            'uploader_principals = ["arn:aws:iam::111111111111:role/northgate-maternity-upload"]\nmesh_mailbox = "X26ABC2"',  # noqa: E501
            "duplicate trust mesh_mailbox: ['X26ABC2']",
        ),
    ],
)
def test_a_bad_registry_is_refused_with_a_message_that_says_what_to_fix(tmp_path, old, new, message):
    assert old in REGISTRY_TEXT
    with pytest.raises(RegistryError) as caught:
        registry_with(tmp_path, REGISTRY_TEXT.replace(old, new, 1))
    assert message in str(caught.value)


def test_an_authority_takes_its_name_type_and_districts_from_the_councils_data_unless_the_registry_gives_them(tmp_path):
    registry = registry_with(tmp_path, REGISTRY_TEXT.replace('name = "Kent County Council"', 'name = "Kent"'))
    kent, cardiff = registry.authority("E10000016"), registry.authority("W06000015")
    assert (kent.name, kent.type, kent.districts) == (
        "Kent",
        "county",
        list(registry.councils_data.districts("E10000016")),
    )
    assert len(kent.districts) == 12 and "E07000110" in kent.districts  # Maidstone, no longer listed by hand
    assert (cardiff.name, cardiff.type) == ("City of Cardiff Council", "welsh principal area")
    assert registry.council_name("E10000016") == "Kent"
    assert registry.council_name("E08000003") == "Manchester City Council"  # not in the registry


def test_a_district_the_councils_data_does_not_know_yet_may_be_listed_and_routes_to_its_county(tmp_path):
    text = REGISTRY_TEXT.replace(
        'name = "Kent County Council"', 'name = "Kent County Council"\ndistricts = ["E07000110", "E07000999"]'
    )
    registry = registry_with(tmp_path, text)
    assert registry.authority("E07000999").gss_code == "E10000016"
    assert "E07000999" in registry.authority("E10000016").districts


def test_the_registry_needs_the_councils_data(tmp_path):
    with pytest.raises(RegistryError, match="councils data .* does not exist"):
        registry_with(tmp_path, REGISTRY_TEXT.replace('file = "authorities-england-wales.csv"', 'file = "no.csv"'))
    with pytest.raises(ValueError, match="needs the councils data"):
        Registry.model_validate(tomllib.loads(REGISTRY_TEXT))


def test_a_trust_is_found_by_its_mesh_mailbox_whatever_its_case():
    registry = load_registry(ROOT / "config" / "registry.toml")
    assert registry.trust_with_mailbox("X26ABC2").ods_code == "RX2"
    assert registry.trust_with_mailbox("x26abc2").ods_code == "RX2"  # MESH treats mailbox ids upper-case
    assert registry.trust_with_mailbox("X26ABC3") is None  # a mailbox no trust has
    assert registry.trust("RX1").mesh_mailbox is None  # uploads by S3 only


def test_a_missing_or_malformed_registry_file_is_named(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "nope.toml")
    with pytest.raises(RegistryError, match="not valid TOML"):
        registry_with(tmp_path, "schema_version = ")


@pytest.mark.parametrize(
    ("header", "row"),
    [
        ("pcds,lad26cd,cty26cd", "LS1 4AP,E08000035,E99999999"),  # a 2026 release
        ("pcd,oslaua,cty", "LS1  4AP,E08000035,"),  # an older ONSPD with padded postcodes
        ("PCD7,LAUA", "LS1 4AP,E08000035"),  # no county column at all
    ],
)
def test_postcode_directories_of_different_releases_load(tmp_path, header, row):
    path = tmp_path / "pd.csv"
    path.write_text(f"{header}\nME14 1XX,E07000110,E10000016\n{row}\nXX1 1XX,,\n")
    directory = PostcodeDirectory.load(path, PostcodeDirectoryColumns())
    assert len(directory) == 2  # the row without a council is left out
    assert directory.lookup("LS1 4AP").district == "E08000035"
    assert directory.lookup("LS1 4AP").county is None
    assert directory.lookup("ME14 1XX").district == "E07000110"


def test_a_postcode_directory_without_known_columns_says_which_to_add(tmp_path):
    path = tmp_path / "pd.csv"
    path.write_text("postcode_2030,lad30cd\nLS1 4AP,E08000035\n")
    with pytest.raises(PostcodeDirectoryError, match=r"add this release's column name"):
        PostcodeDirectory.load(path, PostcodeDirectoryColumns())


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+44 113", "'+44 113"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-1", "-1"),
        ("3400", "3400"),
        ("O'Neill", "O'Neill"),
        (None, ""),
        ("\tcmd", "'\tcmd"),
    ],
)
def test_csv_cells_are_safe_to_open_in_a_spreadsheet(value, safe):
    assert spreadsheet_safe(value) == safe


def test_the_lambda_layer_pins_every_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]}
    pins = {}
    for line in (ROOT / "layers" / "dependencies" / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.split(r"\[", name, maxsplit=1)[0].lower()] = version
    assert wanted - {"boto3"} == set(pins)  # boto3 comes with the Lambda runtime
    from importlib.metadata import version

    for name, pinned in pins.items():
        assert version(name) == pinned, f"{name}: the venv has {version(name)}, the layer pins {pinned}"
