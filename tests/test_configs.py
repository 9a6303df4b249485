from pathlib import Path

import pytest
from conftest import ROOT, run_fpl

from fpl_hf import DeepLabV3PlusConfig
from fpl_hf.trainer import FRAMEWORKS
from fpl_hf.trainer.argument_parser import FPLArgumentParser

CONFIGS = ROOT / "examples" / "configs"
parse_arguments = run_fpl.parse_arguments


def parsed(name: str, tmp_path: Path, *flags: str):
    return parse_arguments(["--config", str(CONFIGS / name), "--output_dir", str(tmp_path), *flags])[:3]


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIGS.glob("*.yaml")))
def test_every_config_parses_and_builds_a_valid_model_config(name, tmp_path):
    model_args, data_args, args = parsed(name, tmp_path)
    DeepLabV3PlusConfig(
        backbone=model_args.backbone,
        output_stride=model_args.output_stride,
        aspp_rates=model_args.aspp_rates,
        num_labels=21,
    )
    assert args.framework in FRAMEWORKS and args.framework_declaration.unlabeled and args.unsup_loss == "fpl"
    assert 0 < args.loss_options.threshold < 1 and args.learning_rate > 0


def test_paper_recipes_hold_the_papers_settings(tmp_path):
    model_args, data_args, voc = parsed("voc_aug_cps_fpl.yaml", tmp_path)
    assert (model_args.backbone, model_args.output_stride, data_args.dataset) == ("resnet101d", 16, "voc_aug")
    assert (voc.framework, voc.cutmix, voc.loss_options.threshold, voc.unsup_weight, voc.crop_size) == (
        "cps",
        True,
        0.9,
        1.0,
        512,
    )
    assert voc.learning_rate == 0.0025 and voc.weight_decay == 1e-4 and voc.num_train_epochs == 40
    assert voc.evaluation_protocol.description == "single scale, sliding window 512 stride 342"

    assert parsed("voc_aug_cps_nocutmix_fpl.yaml", tmp_path)[2].cutmix is False
    assert parsed("voc_aug_cps_fpl_r50.yaml", tmp_path)[0].backbone == "resnet50d"
    assert parsed("voc_low_data_cps_fpl.yaml", tmp_path)[1].dataset == "voc"

    _, city_data, city = parsed("cityscapes_cps_fpl.yaml", tmp_path)
    assert (city_data.dataset, city.unsup_weight, city.ohem, city.crop_size, city.num_train_epochs) == (
        "cityscapes",
        5.0,
        True,
        800,
        140,
    )
    assert (city.eval_crop_size, city.eval_stride, city.loss_options.threshold) == (800, 534, 0.9)
    assert parsed("cityscapes_cps_fpl_1_32.yaml", tmp_path)[2].loss_options.threshold == 0.95

    ael_model, _, ael = parsed("cityscapes_ael_fpl.yaml", tmp_path)
    assert (ael.framework, ael_model.output_stride, ael_model.aspp_rates) == ("mean_teacher", 8, [12, 24, 36])
    assert (ael.learning_rate, ael.crop_size, ael.ema_decay, ael.ohem) == (0.01, 769, 0.99, False)
    _, voc_ael_data, voc_ael = parsed("voc_aug_ael_fpl.yaml", tmp_path)
    assert (voc_ael_data.dataset, voc_ael.crop_size) == ("voc_aug", 513)
    assert voc_ael.evaluation_protocol.description == "single scale, center crop 513"

    _, v2_data, v2 = parsed("voc_unimatch_v2_fpl.yaml", tmp_path)
    assert (v2_data.dataset, v2.framework, v2.ema_decay, v2.optim, v2.learning_rate) == (
        "voc",
        "unimatch_v2",
        0.996,
        "adamw_torch",
        2e-4,
    )
    assert v2.encoder_lr_ratio * v2.learning_rate == pytest.approx(5e-6) and v2.weight_decay == 0.01
    assert (v2.num_train_epochs, v2.eval_mode) == (60, "whole")
    assert (
        parsed("voc_unimatch_v2_fpl.yaml", tmp_path, "--unsup_loss", "ce")[2].loss_options.confidence_threshold == 0.95
    )


def test_the_segformer_recipes_train_a_transformers_model_on_ade20k(tmp_path):
    model_args, data_source, args = parsed("ade20k_segformer_b2_cps_fpl.yaml", tmp_path)
    assert (
        model_args.model_name_or_path == "nvidia/mit-b2" and data_source.reduce_labels and data_source.num_labels == 150
    )
    assert (data_source.image_column, data_source.label_column, args.framework, args.unsup_loss) == (
        "image",
        "annotation",
        "cps",
        "fpl",
    )
    assert args.encoder_lr_ratio * args.learning_rate == pytest.approx(6e-5) and args.max_steps == 160000


def test_flags_override_the_file(tmp_path):
    _, _, args = parsed("voc_aug_cps_fpl.yaml", tmp_path, "--threshold", "0.95", "--fpl_weight", "linear")
    assert (args.loss_options.threshold, args.loss_options.fpl_weight) == (0.95, "linear")
    _, _, args = parsed("voc_aug_cps_fpl.yaml", tmp_path, "--unsup_loss", "ce", "--confidence_threshold", "0.8")
    assert (args.unsup_loss, args.loss_options.confidence_threshold) == ("ce", 0.8)


def test_the_parser_reads_a_config_given_with_an_equals_sign(tmp_path):
    parser = FPLArgumentParser([run_fpl.ModelArguments, run_fpl.DataSource, run_fpl.FPLConfig])
    flags = ["--config=" + str(CONFIGS / "voc_aug_cps_fpl.yaml"), "--output_dir", str(tmp_path)]
    _, _, args = parser.parse_with_config(flags, CONFIGS / "embedded.yaml")
    assert (args.framework, args.crop_size) == ("cps", 512)


def test_unknown_keys_and_missing_bases_are_named(tmp_path):
    (tmp_path / "typo.yaml").write_text("treshold: 0.9\n")
    with pytest.raises(ValueError, match=r"unknown keys \['treshold'\]"):
        parse_arguments(["--config", str(tmp_path / "typo.yaml")])
    (tmp_path / "orphan.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(FileNotFoundError, match="gone.yaml does not exist"):
        parse_arguments(["--config", str(tmp_path / "orphan.yaml")])


def test_the_default_run_is_semi_supervised_with_burn_in_and_ramp_up(tmp_path):
    model_args, data_args, args, recipe = parse_arguments(["--output_dir", str(tmp_path)])
    assert (data_args.dataset, data_args.drawn_labeled) == ("embedded", 20)
    assert (args.framework, args.unsup_loss) == ("unimatch_v2", "fpl")
    assert 0 < args.burn_in_steps < args.max_steps and args.unsup_rampup_steps > 0 and args.max_grad_norm == 0


def test_each_data_source_starts_from_its_own_recipe_named_at_the_start(tmp_path, capsys):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    folders = ["--dataset", "folders", "--num_labels", "2", "--images_dir", str(tmp_path / "images")]
    folders += ["--masks_dir", str(tmp_path / "masks"), "--output_dir", str(tmp_path / "run")]
    _, _, args, recipe = parse_arguments(folders)
    assert recipe == CONFIGS / "real_images.yaml"  # photographs: not the embedded toy's crop 64 and 600 steps
    assert (args.image_size, args.crop_size, args.max_steps, args.burn_in_steps) == (240, 128, 2000, 500)
    _, _, args, _ = parse_arguments([*folders, "--crop_size", "96"])
    assert (args.crop_size, args.max_steps) == (96, 2000)  # a flag over the recipe
    _, _, args, recipe = parse_arguments(["--output_dir", str(tmp_path / "run")])
    assert recipe == CONFIGS / "embedded.yaml" and (args.crop_size, args.max_steps) == (64, 600)
    assert run_fpl.source_config(["--dataset", "scene_parse_150"]) == CONFIGS / "real_images.yaml"  # a Hub data set
    assert run_fpl.source_config(["--dataset", "cityscapes"]) == CONFIGS / "cityscapes_cps_fpl.yaml"
    assert run_fpl.source_config(["--dataset", "folders", "--config", "mine.yaml"]) == Path("mine.yaml")
    line = run_fpl.describe_recipe(CONFIGS / "real_images.yaml")
    assert line.startswith("defaults: ") and "real_images.yaml (image_size 240, crop_size 128, max_steps 2000" in line
