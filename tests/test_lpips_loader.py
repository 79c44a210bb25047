import lpips
import pytest
import torch
import torchvision

from insetgan_ops.lpips_loader import LpipsWeightsMissingError, backbone_filename, find_backbone_file, load_lpips


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """Points torch's hub cache at an empty folder so that the machine's cache cannot interfere."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    """A torchvision AlexNet state dict with random values, saved the way torchvision's file is."""
    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None)
    folder = tmp_path_factory.mktemp("models") / "lpips"
    folder.mkdir()
    path = folder / "alexnet-owt-7be5be79.pth"
    torch.save(net.state_dict(), path)
    return path, net


def features_only(net):
    return {k: v for k, v in net.state_dict().items() if k.startswith("features.")}


def test_backbone_filenames_are_torchvisions():
    assert backbone_filename("alex") == "alexnet-owt-7be5be79.pth"
    assert backbone_filename("vgg") == "vgg16-397923af.pth"
    with pytest.raises(ValueError, match="alex"):
        backbone_filename("squeeze")


def test_backbone_weights_land_in_the_right_layers(alexnet_file, empty_hub):
    path, net = alexnet_file
    model = load_lpips("alex", search_dirs=[path.parent])
    slices = [model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5]
    loaded = {name: module for s in slices for name, module in s.named_children()}
    convs = [k for k, layer in enumerate(net.features) if isinstance(layer, torch.nn.Conv2d)]
    assert convs == [0, 3, 6, 8, 10]
    for k in convs:
        assert torch.equal(loaded[str(k)].weight, net.features[k].weight)
        assert torch.equal(loaded[str(k)].bias, net.features[k].bias)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_loaded_model_equals_lpips_built_with_downloaded_weights(alexnet_file, empty_hub, monkeypatch):
    path, net = alexnet_file
    # What lpips does with pretrained backbones: take torchvision's ImageNet alexnet's features.
    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", lambda pretrained=True, **_: net)
    reference = lpips.LPIPS(net="alex", verbose=False)
    model = load_lpips("alex", search_dirs=[path.parent])
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        expected, got = reference(a, b), model(a, b)
    assert got.shape == (2, 1, 1, 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert float(got.min()) > 0


def test_torch_hub_cache_is_searched(alexnet_file, tmp_path, monkeypatch):
    _, net = alexnet_file
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(features_only(net), hub / "checkpoints" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    assert find_backbone_file("alex", search_dirs=[tmp_path]) == hub / "checkpoints" / "alexnet-owt-7be5be79.pth"


def test_missing_weights_say_which_file_goes_where(tmp_path, empty_hub):
    with pytest.raises(LpipsWeightsMissingError) as info:
        load_lpips("vgg", search_dirs=[tmp_path])
    message = str(info.value)
    assert "vgg16-397923af.pth" in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert str(tmp_path) in message and str(empty_hub / "checkpoints") in message
    assert "models/lpips" in message


def test_untrained_backbone_is_allowed_when_asked(tmp_path, empty_hub):
    model = load_lpips("alex", search_dirs=[tmp_path], allow_untrained_backbone=True)
    x = torch.zeros(1, 3, 64, 64)
    assert float(model(x, x)) == 0.0


def test_wrong_backbone_file_is_rejected(alexnet_file, tmp_path, empty_hub):
    _, net = alexnet_file
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    state = features_only(net)
    state["features.3.weight"] = state["features.3.weight"][:, :10]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"features\.3\.weight.*shape"):
        load_lpips("alex", search_dirs=[tmp_path])
    torch.save({"classifier.1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"features\.0\.weight' is missing"):
        load_lpips("alex", search_dirs=[tmp_path])
