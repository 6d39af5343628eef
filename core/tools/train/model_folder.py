# SPDX-License-Identifier: GPL-2.0-or-later
"""The folder arcgis.learn's ``save()`` writes, for a model trained here, and its ``.dlpk``.

``<name>/<name>.pth`` (the bare state_dict, arcgis.learn's keys), ``<name>.emd`` (the keys arcgis.learn writes for
the family: the common ones of ``_create_emd_template`` plus the family's ``_get_emd_params``), ``model_metrics.html``,
``ModelCharacteristics/loss_graph.png`` and ``show_results.png`` (where arcgis.learn puts them),
``training_validation_loss.json`` (the losses and metrics of every epoch) and ``<name>.dlpk``.  The inference
function is named the way arcgis.learn names ArcGIS Pro's own (``[Functions]System\\DeepLearning\\...``).  The one
Python file that travels with a model is FasterRCNN's ``ModelConfiguration.py`` (this plugin's own
:mod:`.arcgis_model_configuration`, copied as it is): ArcGIS Pro builds that family's network from it, as from the file
arcgis.learn writes there.  Every file is written under a temporary name and renamed when all are written.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from pathlib import Path
from typing import Any

from ...flags import is_true
from ...model.packages import create_package
from ...progress import Progress
from ...safe_output import OutputSet
from .layouts import TrainingData

#: The arcgis.learn version whose saved-folder layout this writer follows.
FORMAT_VERSION = "2.4.4"
FUNCTIONS = "[Functions]System\\DeepLearning\\ArcGISLearn\\"

#: model type -> (ModelConfiguration, ModelType, inference function)
FAMILY_KEYS = {
    "UnetClassifier": ("_unet", "ImageClassification", "ArcGISImageClassifier.py"),
    "DeepLab": ("_deeplab_infrencing", "ImageClassification", "ArcGISImageClassifier.py"),
    "FeatureClassifier": ("_FeatureClassifier", "ObjectClassification", "ArcGISObjectClassifier.py"),
    "FasterRCNN": ("_model_extension_inferencing", "ObjectDetection", "ArcGISObjectDetector.py"),
    "MaskRCNN": ("_maskrcnn_inferencing", "InstanceDetection", "ArcGISInstanceDetector.py"),
    "SingleShotDetector": ("_DynamicSSD", "ObjectDetection", "ArcGISObjectDetector.py"),
    "RetinaNet": ("_RetinaNet_Inference", "ObjectDetection", "ArcGISObjectDetector.py"),
}
PIXEL_MODELS = ("UnetClassifier", "DeepLab")
#: FasterRCNN's ModelConfigurationFile (arcgis.learn's name) and the plugin's file copied there
MODEL_CONFIGURATION_FILE = "ModelConfiguration.py"
MODEL_CONFIGURATION_SOURCE = Path(__file__).with_name("arcgis_model_configuration.py")


def model_emd(name: str, model_type: str, backbone: str, data: TrainingData, chip: tuple[int, int],
              normalisation: dict[str, Any]) -> dict[str, Any]:
    """The ``.emd`` of the network before training (what builds it); :func:`finish_emd` adds the results."""
    config, kind, function = FAMILY_KEYS[model_type]
    emd: dict[str, Any] = {
        "Framework": "arcgis.learn.models._inferencing", "ModelConfiguration": config, "ModelType": kind,
        "InferenceFunction": FUNCTIONS + function, "ExtractBands": [0, 1, 2],
        "Classes": [{"Value": c.value, "Name": c.name, "Color": list(c.color)} for c in data.classes],
        "ModelFormat": "NCHW", "MinCellSize": data.emd.get("MinCellSize"), "MaxCellSize": data.emd.get("MaxCellSize"),
        "SupportsVariableTileSize": model_type in PIXEL_MODELS, "ArcGISLearnVersion": FORMAT_VERSION,
        "ModelFile": f"{name}.pth", "ImageHeight": chip[0], "ImageWidth": chip[1],
        "ImageSpaceUsed": data.emd.get("ImageSpaceUsed", "MAP_SPACE"), "ModelName": model_type, "backend": "pytorch",
        "ModelParameters": {"backbone": backbone, "backend": "pytorch"}, "resize_to": None,
    }
    if model_type in PIXEL_MODELS:
        emd["ignore_mapped_class"] = []
    if model_type == "DeepLab":
        emd["ModelParameters"].update(pointrend=False, keep_dilation=False)
    if model_type == "FeatureClassifier":
        emd.update(MetaDataMode=data.layout, ImageSpaceUsed="MAP_SPACE",
                   CropSizeFixed=int(_fixed_size(data.emd.get("CropTileMode"))),
                   BlackenAroundFeature=int(_flag(data.emd.get("BlackenAroundFeature"))))
    if model_type == "FasterRCNN":  # arcgis.learn's ModelExtension keys: ArcGIS Pro imports the class from the file
        emd.update(ModelConfigurationFile=MODEL_CONFIGURATION_FILE, ModelFileConfigurationClass="MyFasterRCNN",
                   DatasetType=data.layout, Kwargs={})
    if model_type == "MaskRCNN":  # MaskRCNN._get_emd_params
        emd.update(MaskRCNNkwargs={}, SupportsVariableTileSize=True)
        emd["ModelParameters"]["pointrend"] = False
    emd.update(normalisation)
    return emd


def _fixed_size(mode: Any) -> bool:  # noqa: ANN401
    """CropTileMode: ArcGIS writes Fixed_Size / Variable_Size, this plugin's export FIXED_SIZE / BOUNDING_BOX."""
    return not isinstance(mode, str) or mode.replace("_", "").lower() == "fixedsize"


def _flag(value: Any) -> bool:  # noqa: ANN401
    """An .emd flag read the plugin's one way (:func:`core.flags.is_true` for text)."""
    return is_true(value) if isinstance(value, str) else bool(value)


def finish_emd(emd: dict[str, Any], learning_rate: float, best: Any) -> dict[str, Any]:  # noqa: ANN401
    """The results arcgis.learn records: learning rate, monitored validation loss, accuracy, per-class metrics."""
    out = dict(emd)
    out["LearningRate"] = f"{learning_rate:1.4e}"
    out["monitored_valid_loss"] = best.valid_loss
    if out["ModelName"] in PIXEL_MODELS:
        out["accuracy"] = f"{best.metrics['accuracy']:1.4e}"
        out["mIoU"] = best.metrics.get("miou")
        out["per_class_metrics"] = json.dumps(best.metrics.get("per_class", {}))
    elif "average_precision" in best.metrics:  # detectors: AP per class name, as average_precision_score() gives
        out["average_precision_score"] = {n: r["ap"] for n, r in best.metrics["average_precision"].items()}
    else:
        out["accuracy"] = f"{best.metrics['accuracy']:1.4e}"
    return out


def _image_tag(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{alt}">'


def metrics_html(emd: dict[str, Any], history: list, best_epoch: int, loss_png: Path, results_png: Path) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{h.epoch}</td><td>{h.train_loss:.4f}</td><td>{h.valid_loss:.4f}</td>"
                   f"<td>{h.metrics.get('accuracy', h.metrics.get('map', float('nan'))):.4f}</td>"
                   f"<td>{h.metrics.get('miou', float('nan')):.4f}</td>"
                   f"<td>{h.seconds:.1f}</td></tr>" for h in history)
    best = next(h for h in history if h.epoch == best_epoch)
    per_class = best.metrics.get("per_class") or {}
    aps = best.metrics.get("average_precision") or {}
    ap_rows = "".join(f"<tr><td>{e(n)}</td><td>{'none' if r['ap'] is None else format(r['ap'], '.4f')}</td>"
                      f"<td>{r['precision']:.4f}</td><td>{r['recall']:.4f}</td><td>{r['f1']:.4f}</td></tr>"
                      for n, r in aps.items())
    ap_html = (f"<p><b>Average Precision Score:</b> mAP {best.metrics['map']:.4f} at IoU "
               f"{best.metrics['iou_threshold']:g}</p><table><tr><th>class</th><th>AP</th><th>precision</th>"
               f"<th>recall</th><th>F1</th></tr>{ap_rows}</table>") if aps else ""
    kept = "<b>Kept:</b>" if aps else f"<b>Accuracy:</b> {e(str(emd.get('accuracy')))}"
    class_rows = "".join(f"<tr><td>{e(n)}</td><td>{r['precision']:.4f}</td><td>{r['recall']:.4f}</td>"
                         f"<td>{r['f1']:.4f}</td><td>{r['iou']:.4f}</td></tr>" for n, r in per_class.items())
    matrix = best.metrics.get("confusion_matrix")
    matrix_html = ("<p><b>Confusion matrix</b> (rows: truth, columns: prediction)</p><table>" + "".join(
        "<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in matrix) + "</table>") if matrix else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{e(emd['ModelName'])} model metrics</title></head><body>
<p><b>{e(emd['ModelName'])}</b></p>
<p><b>Backbone:</b> {e(str(emd['ModelParameters'].get('backbone')))}</p>
<p><b>Learning Rate:</b> {e(emd['LearningRate'])}</p>
<p><b>Training and Validation loss</b></p>{_image_tag(loss_png, 'training and validation losses')}
<p>{kept} (epoch {best_epoch}, the best by the monitored validation score: loss, or mAP when asked)</p>{ap_html}
{f"<p><b>mIoU:</b> {best.metrics['miou']:.4f}</p>" if 'miou' in best.metrics else ''}
{('<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>IoU</th></tr>' + class_rows + '</table>')
 if class_rows else ''}{matrix_html}
<p><b>Epochs</b></p><table><tr><th>epoch</th><th>training loss</th><th>validation loss</th><th>{'mAP' if aps else 'accuracy'}</th>
<th>mIoU</th><th>seconds</th></tr>{rows}</table>
<p><b>Sample Results</b></p>{_image_tag(results_png, 'validation chips: ground truth and prediction')}
</body></html>
"""


class _Finishing:
    """The run's progress with cancellation ignored: a cancelled training still writes its folder, whole."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - set_progress, info, warning, debug
        return getattr(self._progress, name)

    def is_canceled(self) -> bool:
        return False


def write_model_folder(folder: Path, emd: dict[str, Any], state: dict[str, Any], history: list, best_epoch: int,
                       samples: list, torch, progress: Progress) -> dict[str, Path]:  # noqa: ANN001
    """Write the model folder (every file under a temporary name, renamed at the end) and its .dlpk."""
    name = Path(emd["ModelFile"]).stem
    characteristics = folder / "ModelCharacteristics"
    characteristics.mkdir(parents=True, exist_ok=True)
    targets = {"pth": folder / f"{name}.pth", "emd": folder / f"{name}.emd", "html": folder / "model_metrics.html",
               "json": folder / "training_validation_loss.json", "loss_graph": characteristics / "loss_graph.png",
               "show_results": characteristics / "show_results.png"}
    if emd.get("ModelConfigurationFile"):
        targets["model_configuration"] = folder / emd["ModelConfigurationFile"]
    with OutputSet() as outputs:
        tmp = {key: Path(outputs.path_for(path)) for key, path in targets.items()}
        if "model_configuration" in tmp:
            shutil.copyfile(MODEL_CONFIGURATION_SOURCE, tmp["model_configuration"])
        torch.save({k: v.detach().cpu() for k, v in state.items()}, str(tmp["pth"]))
        tmp["emd"].write_text(json.dumps(emd, indent=4), encoding="utf-8")
        tmp["json"].write_text(json.dumps({"best_epoch": best_epoch, "epochs": [h.epoch for h in history],
                                           "training_loss": [h.train_loss for h in history],
                                           "validation_loss": [h.valid_loss for h in history],
                                           "metrics": [h.metrics for h in history]}, indent=2), encoding="utf-8")
        try:
            from .pictures import loss_graph, show_detections, show_results

            loss_graph(history, best_epoch, tmp["loss_graph"])
            names = [c["Name"] for c in emd["Classes"]]
            if emd["ModelName"] in PIXEL_MODELS:
                names = ["background"] + names
            colours = [tuple(c["Color"]) for c in emd["Classes"]]
            if samples and isinstance(samples[0][1], dict):
                show_detections(samples, names, colours, tmp["show_results"])
            else:
                show_results(samples, names, colours, tmp["show_results"])
        except ImportError:
            progress.warning("matplotlib is not installed: loss_graph.png and show_results.png are left out")
        tmp["html"].write_text(metrics_html(emd, history, best_epoch, tmp["loss_graph"], tmp["show_results"]),
                               encoding="utf-8")
    written = {k: p for k, p in targets.items() if p.is_file()}
    extras = [p for k, p in written.items() if k in ("html", "json")]
    if any(characteristics.iterdir()):
        extras.append(characteristics)
    written["dlpk"] = create_package(targets["emd"], folder / f"{name}.dlpk", extra_files=extras,
                                     progress=_Finishing(progress), stored=(".pth", ".png"))
    return written
