import dataclasses

import pytest

from distorch.logic.placement_record import ATTACHMENT_KEY, PlacementRecord, attach, placement_of


class PatcherLike:
    """Stands in for ModelPatcher's one relevant attribute (its attachments dict)."""

    def __init__(self):
        self.attachments = {}


PLACEMENT = PlacementRecord(loader="DisTorchUNETLoader", component="unet", compute_device="cpu",
                           requested_device="default", source="x.safetensors")


def test_attach_and_read_back():
    patcher = PatcherLike()
    attach(patcher, PLACEMENT)
    assert patcher.attachments[ATTACHMENT_KEY] is PLACEMENT
    assert placement_of(patcher) == PLACEMENT


def test_unmanaged_model_has_no_placement():
    assert placement_of(PatcherLike()) is None
    assert placement_of(object()) is None


def test_placement_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PLACEMENT.source = "y.safetensors"


def test_attach_refuses_objects_without_attachments():
    with pytest.raises(TypeError, match="too old"):
        attach(object(), PLACEMENT)
