"""TrainConfig: recipe files, typed overrides, and errors that name the bad key or value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ingot.data.preprocess import AugmentationConfig
from ingot.errors import ConfigError
from ingot.train.config import TrainConfig, valid_keys

REPO = Path(__file__).resolve().parents[2]
# configs/ also holds the rollout controller's policy; every other YAML file there is a recipe.
NOT_RECIPES = {"rollout-local.yaml"}
RECIPES = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name not in NOT_RECIPES)


def test_defaults_are_valid_and_round_trip_through_json():
    config = TrainConfig()
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["image_size"] == [32, 32]
    assert data["augmentation"] == {"flip": "none", "rotation": 0.0, "zoom": 0.0}
    assert TrainConfig.from_dict(data) == config
    assert set(data) == set(valid_keys())


def test_digits_recipe_is_the_default_cnn_without_flips():
    config = TrainConfig.from_yaml(REPO / "configs" / "digits-cnn.yaml")
    assert config.architecture == "cnn"
    assert config.image_size == (32, 32)
    assert config.augmentation.flip == "none"
    assert 0 < config.augmentation.rotation <= 0.05
    assert config.resolved_weights is None
    assert config.dataset == "bundled:digits"
    assert config.early_stopping_patience > 0


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_loads(recipe):
    config = TrainConfig.from_yaml(recipe)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_flowers_recipe_is_a_two_stage_transfer_recipe():
    config = TrainConfig.from_yaml(REPO / "configs" / "flowers-mobilenet.yaml")
    assert config.is_transfer and config.resolved_weights == "imagenet"
    assert config.fine_tune_layers > 0 and config.fine_tune_epochs > 0
    assert config.augmentation.flip == "horizontal"


def test_overrides_are_coerced_to_the_field_types():
    base = TrainConfig()
    config = base.with_overrides(
        [
            "epochs=3",
            "augmentation.rotation=0.1",
            "augmentation.flip=horizontal",
            "image_size=64",
            "learning_rate=1e-4",
            "mixed_precision=false",
            "checkpoint_dir=/tmp/ck",
            "batch_norm=yes",
            "seed=7.0",
        ]
    )
    assert config.epochs == 3 and isinstance(config.epochs, int)
    assert config.augmentation == AugmentationConfig(flip="horizontal", rotation=0.1, zoom=0.0)
    assert config.image_size == (64, 64)
    assert config.learning_rate == pytest.approx(1e-4) and isinstance(config.learning_rate, float)
    assert config.mixed_precision is False
    assert config.checkpoint_dir == "/tmp/ck"
    assert config.batch_norm is True
    assert config.seed == 7 and isinstance(config.seed, int)
    assert base.epochs == 30 and base.augmentation.rotation == 0.0  # the original is untouched
    assert config.with_overrides(["checkpoint_dir=null", "image_size=[48, 40]"]).checkpoint_dir is None
    assert config.with_overrides(["image_size=48x40"]).image_size == (48, 40)
    assert config.with_overrides(["mixed_precision=auto"]).mixed_precision == "auto"
    assert config.warmup_batch_sizes == (1,)  # the default: a signature's first call, at batch 1
    assert config.with_overrides(["warmup_batch_sizes=1,8,32"]).warmup_batch_sizes == (1, 8, 32)
    assert config.with_overrides(["warmup_batch_sizes=[4]"]).warmup_batch_sizes == (4,)


def test_yaml_values_are_coerced_too(tmp_path):
    # PyYAML reads 1e-3 (no dot) as a string; the field type decides.
    path = tmp_path / "r.yaml"
    path.write_text("learning_rate: 1e-3\nimage_size: 40\nweights: null\nepochs: '12'\n")
    config = TrainConfig.from_yaml(path)
    assert config.learning_rate == pytest.approx(1e-3)
    assert config.image_size == (40, 40)
    assert config.weights == "none" and config.resolved_weights is None
    assert config.epochs == 12


@pytest.mark.parametrize(
    "override, message",
    [
        ("epoch=3", r"unknown config key 'epoch' \(did you mean 'epochs'\?\); valid keys: architecture, image_size, epochs"),
        ("optimiser=sgd", r"unknown config key 'optimiser' \(did you mean 'optimizer'\?\)"),
        ("epochs", r"override 'epochs' is not valid; expected key=value"),
        ("epochs=three", r"epochs='three' is not valid; expected an integer"),
        ("epochs=2.5", r"epochs=2.5 is not valid; expected an integer"),
        ("epochs=0", r"epochs=0 is not valid; expected an integer >= 1"),
        ("learning_rate=fast", r"learning_rate='fast' is not valid; expected a number"),
        ("batch_norm=maybe", r"batch_norm='maybe' is not valid; expected true or false"),
        ("augmentation.spin=0.1", r"unknown augmentation key\(s\) spin; valid keys: flip, rotation, zoom"),
        ("augmentation.flip=diagonal", r"augmentation.flip='diagonal' is not valid"),
        ("epochs.max=3", r"epochs has no nested settings"),
        ("architecture=vgg16", r"unknown architecture 'vgg16'; expected one of cnn, mobilenet_v2"),
        ("image_size=16", r"too small for cnn: it needs at least 18x18"),
        ("image_size=big", r"image_size=.* is not valid"),
        ("verbose=loud", r"verbose='loud' is not valid; expected one of auto, bar, lines, quiet"),
        ("mixed_precision=sometimes", r"mixed_precision='sometimes' is not valid; expected auto, true or false"),
        ("optimizer=adagrad", r"optimizer='adagrad' is not valid; expected one of adam, adamw, sgd, rmsprop"),
        ("test_fraction=0.9", r"validation_fraction \+ test_fraction = 1 leaves no training data"),
        ("validation_fraction=0", r"early stopping needs a validation split"),
        ("weights=imagenet", r"weights=imagenet is not available for the cnn"),
        ("fine_tune_layers=10", r"fine_tune_layers=10 applies to transfer architectures"),
        ("jit_compile=fast", r"jit_compile='fast' is not valid; expected auto, true or false"),
        ("distribution=parameter_server", r"distribution='parameter_server' is not valid; expected one of auto, multi_worker"),
        ("workers=2", r"workers=2 needs distribution=multi_worker"),
        ("workers=0", r"workers=0 is not valid; expected an integer >= 1"),
        ("shard_mb=0", r"shard_mb=0 is not valid; expected an integer >= 1"),
        ("warmup_batch_sizes=1,0", r"warmup_batch_sizes=0 is not valid; expected an integer >= 1"),
        ("warmup_batch_sizes=1,big", r"warmup_batch_sizes\[1\]='big' is not valid; expected an integer"),
    ],
)
def test_bad_overrides_name_the_key_and_what_is_expected(override, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig().with_overrides([override])


def test_training_engine_settings():
    config = TrainConfig().with_overrides(["jit_compile=true", "distribution=multi_worker", "workers=3",
                                           "shard_mb=64", "backup_dir=/tmp/backup"])
    assert (config.jit_compile, config.distribution, config.workers, config.shard_mb) == (True, "multi_worker", 3, 64)
    assert config.backup_dir == "/tmp/backup"
    assert TrainConfig().jit_compile == "auto" and TrainConfig().workers == 1 and TrainConfig().shard_mb == 128
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_batch_norm_is_refused_for_transfer_models():
    with pytest.raises(ConfigError, match="batch_norm applies to the cnn only; resnet50"):
        TrainConfig(architecture="resnet50", batch_norm=True)


def test_weights_resolution_per_architecture():
    assert TrainConfig(architecture="mobilenet_v2").resolved_weights == "imagenet"
    assert TrainConfig(architecture="mobilenet_v2", weights="none").resolved_weights is None
    assert TrainConfig(architecture="resnet50", weights="/w/r50.h5").resolved_weights == "/w/r50.h5"
    assert TrainConfig().model_options() == {"dropout": 0.2, "weights": None, "batch_norm": False}
    assert "batch_norm" not in TrainConfig(architecture="efficientnet_b0").model_options()


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: 3\nepohcs: 4\n", r"r.yaml: unknown config key 'epohcs' \(did you mean 'epochs'\?\)"),
        ("- epochs\n- 3\n", r"must hold a mapping of settings; got list"),
        ("epochs: [3\n", r"is not valid YAML"),
        ("augmentation: horizontal\n", r"augmentation='horizontal' is not valid; expected a mapping"),
    ],
)
def test_bad_recipe_files_are_config_errors(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_yaml(path)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*nope.yaml' does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


def test_config_import_does_not_import_tensorflow():
    code = ("import sys, ingot.train, ingot.models, ingot.train.config, ingot.models.catalog; "
            "ingot.train.config.TrainConfig(); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
