"""Case identity and the record codec: round trips, and edits or unknown keys are refused."""

import json

import pytest

from qbench.errors import StoreError
from qbench.records import CalibrationSpec, Case, RunRecord
from tests.factories import make_case, make_record


def test_case_id_is_readable_and_engine_less_modes_show_a_dash():
    assert make_case().case_id == "resnet18/static_fx/x86/b1/t1/random"
    assert make_case(mode="fp32", engine=None).case_id == "resnet18/fp32/-/b1/t1/random"
    assert make_case(weights="checkpoint:/w.pt").case_id.endswith("/checkpoint")


def test_case_version_changes_with_anything_that_changes_the_numbers():
    base = make_case()
    assert base.case_version == make_case().case_version
    for other in (make_case(engine="qnnpack"), make_case(batch_size=8), make_case(weights="pretrained"),
                  make_case(calibration=CalibrationSpec(batches=3)), make_case(seed=1)):
        assert other.case_version != base.case_version


def test_record_round_trips_through_json():
    record = make_record()
    again = RunRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record


def test_record_with_unknown_key_is_refused():
    data = make_record().to_dict()
    data["latnecy"] = 1
    with pytest.raises(StoreError, match="unknown key"):
        RunRecord.from_dict(data)


def test_edited_case_is_detected_by_its_version():
    data = make_record().to_dict()
    data["case"]["batch_size"] = 8
    with pytest.raises(StoreError, match="case_version"):
        RunRecord.from_dict(data)


def test_status_must_be_known():
    with pytest.raises(StoreError, match="status"):
        make_record(status="exploded")


def test_case_from_dict_rejects_unknown_keys():
    with pytest.raises(StoreError, match="unknown key"):
        Case.from_dict({**make_case().to_dict(), "engnie": "x86"})


def test_fields_added_later_keep_older_case_versions():
    import hashlib

    from qbench.records import canonical_json

    case = make_case()
    schema_1_fields = {k: v for k, v in case.to_dict().items() if k not in ("runner", "qat")}
    assert case.case_version == hashlib.sha256(canonical_json(schema_1_fields).encode()).hexdigest()[:16]
    assert make_case(runner="avx2").case_version != case.case_version


def test_qat_spec_is_part_of_a_qat_case_identity_and_round_trips():
    from qbench.records import Case, QatSpec

    short, long = (make_case(mode="qat", qat=QatSpec(steps=n)) for n in (5, 50))
    assert short.case_version != long.case_version
    assert Case.from_dict(long.to_dict()) == long
    assert Case.from_dict(long.to_dict()).qat.steps == 50
