# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model: one run, from a training-data folder to a model folder.

The algorithm gives a :class:`TrainRequest` (plain paths, numbers and flags); :func:`train_model` reads and checks
the training data (:mod:`.layouts`, :mod:`.chips`), builds the family's network (:mod:`.networks`), trains it with
checkpoints in ``OUTPUT_FOLDER/checkpoints`` (:mod:`.loop`) and writes the model folder from the epoch with the
lowest validation loss (:mod:`.model_folder`).  A cancelled training still writes the folder from its best finished
epoch and says so; cancelled before an epoch ends, it writes nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...backends import DeviceRequest
from ...errors import ArgumentError, InputDataError, OutputError
from ...progress import NullProgress, Progress
from .anchor_detection import ANCHOR_DETECTORS, AnchorDetectionTrainer, anchor_emd
from .chips import ChipReader, chip_shape, read_array, scan_labels, training_normalisation
from .detection import (
    DETECTORS,
    DetectionReader,
    DetectionTrainer,
    MaskReader,
    rcnn_normalisation,
    scan_objects,
    set_box_sampling,
)
from .layouts import read_training_folder
from .loop import FitOutcome, Trainer, TrainSettings
from .model_folder import PIXEL_MODELS, finish_emd, model_emd, write_model_folder
from .options import class_weights, ignored_indexes, parse_arguments

SAMPLES = 4  # validation chips drawn in show_results.png


@dataclass
class TrainRequest:
    input_folder: str
    output_folder: str
    settings: TrainSettings
    pretrained_model: str = ""
    pretrained_backbone: str = ""
    download_backbone: bool = False
    arguments: str = ""
    device: DeviceRequest = field(default_factory=DeviceRequest)


@dataclass
class TrainResult:
    folder: Path
    files: dict[str, Path]
    outcome: FitOutcome
    emd: dict[str, Any]


def _check_folders(request: TrainRequest) -> tuple[Path, Path]:
    source, target = Path(request.input_folder).resolve(), Path(request.output_folder).resolve()
    if not request.output_folder:
        raise OutputError("OUTPUT_FOLDER is empty: give the folder the model is written to")
    if target == source or source in target.parents or target in source.parents:
        raise OutputError(f"OUTPUT_FOLDER '{target}' overlaps the training data '{source}': choose a folder outside "
                          "it (a run never writes into its inputs)")
    if target.exists() and not target.is_dir():
        raise OutputError(f"OUTPUT_FOLDER '{target}' is a file, not a folder")
    return source, target


def _samples(trainer: Trainer, reader: ChipReader, torch) -> list[tuple]:  # noqa: ANN001
    module = trainer.module.eval()
    picked = trainer.valid_idx[:SAMPLES]
    out = []
    with torch.no_grad():
        for i in picked:
            scores = module(torch.from_numpy(reader.image(i)[None]).to(trainer.device))
            scores = scores["out"] if isinstance(scores, dict) else scores
            predicted = scores.argmax(dim=1)[0].cpu().numpy()
            out.append((read_array(reader.data.images[i]), reader.target(i),
                        predicted if predicted.ndim else int(predicted)))
    return out


def train_model(request: TrainRequest, progress: Progress | None = None) -> TrainResult:
    """Train ``request.settings.model_type`` on ``request.input_folder``; write the model folder."""
    from ...backends.arcgis_learn_backend import import_torchvision
    from ...backends.torch_backend import import_torch, select_device
    from .networks import build_network, freeze_backbone, imagenet_state, load_backbone_weights

    progress = progress or NullProgress()
    s = request.settings
    args = parse_arguments(request.arguments, s.model_type)
    s.seed = int(args.get("seed", s.seed))
    s.lr_finder_steps = int(args.get("lr_finder_steps", s.lr_finder_steps))
    s.monitor = args.get("monitor", s.monitor)
    if args.get("threads"):
        request.device.threads = int(args["threads"])
    if s.max_epochs < 1 or s.batch_size < 1:
        raise ArgumentError("MAX_EPOCHS and BATCH_SIZE must be 1 or more")
    source, target = _check_folders(request)
    data = read_training_folder(source, s.model_type)
    anchored = s.model_type in ANCHOR_DETECTORS
    detector = s.model_type in DETECTORS or anchored
    if detector:
        _check_detector_backbone(s.model_type, s.backbone)
    bands, rows, cols, dtype = chip_shape(data)
    counts = scan_objects(data) if detector else scan_labels(data)
    names = (["background"] if s.model_type in PIXEL_MODELS else []) + [c.name for c in data.classes]
    progress.info(f"{data.layout} training data: {data.count} chips of {cols} x {rows} pixels, {bands} bands "
                  f"({dtype}); " + ", ".join(f"{n} {c}" for n, c in zip(names, counts)) +
                  (" pixels" if s.model_type in PIXEL_MODELS else " objects" if detector else " chips"))
    norm = training_normalisation(data, bands, dtype)
    emd = model_emd(target.name, s.model_type, s.backbone, data, (rows, cols), norm.emd_keys(bands))
    if anchored:
        emd, anchors = anchor_emd(emd, args, data, (rows, cols))
        progress.info(anchors)
    values = [c.value for c in data.classes]
    if s.model_type in PIXEL_MODELS:
        emd["ignore_mapped_class"] = ignored_indexes(values, args.get("ignore_classes", []))
    weights = class_weights(counts, values, bool(args.get("class_balancing")), args.get("ignore_classes", [])) \
        if s.model_type in PIXEL_MODELS else None
    if weights is not None:
        progress.info("Loss weights per class: " + ", ".join(f"{n} {w:.4g}" for n, w in zip(names, weights)))
    torch, torchvision = import_torch(), import_torchvision()
    device, provider = select_device(torch, request.device)
    progress.info(f"Device: {provider}" + (" (mixed precision)" if device.type == "cuda" else ""))
    module = build_network(emd, s.seed, torch, torchvision)
    if s.model_type in DETECTORS:  # arcgis.learn keeps the torchvision arguments in Kwargs (MaskRCNN: MaskRCNNkwargs)
        emd["Kwargs" if s.model_type == "FasterRCNN" else "MaskRCNNkwargs"].update(set_box_sampling(module, args))
    if request.pretrained_model:
        _fine_tune(module, request.pretrained_model, s.model_type, torch, progress)
    elif request.pretrained_backbone:
        load_backbone_weights(module, s.model_type, Path(request.pretrained_backbone), torch, progress)
    elif request.download_backbone:
        state, name = imagenet_state(torchvision, s.backbone)
        load_backbone_weights(module, s.model_type, Path(name), torch, progress, state=state)
    else:
        progress.info(f"No PRETRAINED_BACKBONE: the {s.backbone} backbone starts from random weights (seed {s.seed})")
    if s.freeze and not (request.pretrained_model or request.pretrained_backbone or request.download_backbone):
        progress.warning("FREEZE without PRETRAINED_BACKBONE or PRETRAINED_MODEL: the backbone keeps its random "
                         "weights and only the head learns")
    if s.freeze:
        progress.info(f"FREEZE: {freeze_backbone(module, s.model_type):,} backbone weights stay as loaded")
    module.to(device)
    reader_class = (MaskReader if s.model_type == "MaskRCNN" else DetectionReader) if detector else ChipReader
    reader = reader_class(data, rcnn_normalisation(norm) if s.model_type in DETECTORS else norm, (bands, rows, cols))
    fingerprint = {**asdict(s), "chips": data.count, "classes": names, "chip": [bands, rows, cols], "arguments": args,
                   "pretrained_model": request.pretrained_model, "pretrained_backbone": request.pretrained_backbone,
                   "download_backbone": request.download_backbone}
    trainer_class = AnchorDetectionTrainer if anchored else DetectionTrainer if detector else Trainer
    trainer = trainer_class(module, reader, s, names, s.model_type in PIXEL_MODELS, torch, device, progress,
                            target / "checkpoints", fingerprint)
    if anchored:
        trainer.configure(emd, args)
    trainer.set_loss(weights, bool(args.get("focal_loss")))
    outcome = trainer.run()
    module.load_state_dict(outcome.best_state)
    best = next(h for h in outcome.history if h.epoch == outcome.best_epoch)
    final = finish_emd(emd, outcome.learning_rate, best)
    files = write_model_folder(target, final, module.state_dict(), outcome.history, outcome.best_epoch,
                               trainer.samples(SAMPLES) if detector else _samples(trainer, reader, torch), torch,
                               progress)
    last = outcome.history[-1].epoch
    if outcome.canceled:
        progress.warning(f"Training was cancelled during epoch {last + 1}: the model folder holds epoch "
                         f"{outcome.best_epoch}, the best finished epoch (validation loss {best.valid_loss:.4f}); "
                         f"run again with the same OUTPUT_FOLDER to resume from epoch {last}'s checkpoint")
    else:
        kept = f"highest validation mAP {best.metrics.get('map', 0.0):.4f}" if s.monitor == "average_precision" \
            else f"lowest validation loss {best.valid_loss:.4f}"
        progress.info(f"Kept epoch {outcome.best_epoch} of {last} ({kept})")
    progress.info(f"Model written to '{files['emd']}' and '{files['dlpk']}'")
    return TrainResult(folder=target, files=files, outcome=outcome, emd=final)


def _check_detector_backbone(model_type: str, backbone: str) -> None:
    from ...backends.arcgis_learn.families import supported_backbones

    allowed = supported_backbones(model_type)
    if backbone not in allowed:
        raise ArgumentError(f"BACKBONE {backbone}: {model_type} is trained on the backbones its inference rebuilds "
                            f"({', '.join(allowed)})")


def _fine_tune(module, model: str, model_type: str, torch, progress: Progress) -> None:  # noqa: ANN001
    from ...backends.arcgis_learn.weights import read_state_dict
    from ...model.loader import load_model_definition
    from .networks import load_pretrained_model

    md = load_model_definition(model)
    if md.model_name != model_type or md.model_file is None:
        raise InputDataError(f"PRETRAINED_MODEL '{model}' is a {md.model_name or md.model_type} model: fine-tuning "
                             f"needs a {model_type} model with its .pth")
    load_pretrained_model(module, read_state_dict(torch, md.model_file), os.path.basename(model), progress)
