# SPDX-License-Identifier: GPL-2.0-or-later
"""`make demo`: classify the NAIP sample with Esri's land-cover model, through the real Processing tool.

Writes a classified GeoTIFF, its .qml style and a PNG preview with a legend, and
prints where they are.  Other inputs: ``make demo RASTER=... MODEL=...`` (or the
environment variables DEMO_RASTER / DEMO_MODEL).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "testdata"
DEFAULT_RASTER = TESTDATA / "naip" / "naip_m_4709963_se_14_1_20200831.tif"
DEFAULT_MODEL = TESTDATA / "esri" / "landcover" / "trained.emd"


def _setup_plugin_path() -> None:
    plugins = ROOT / "build" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "dltools"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(plugins))
    sys.path.append("/usr/share/qgis/python/plugins")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def render_preview(raster: str, png: str, title: str) -> None:
    """Render the styled class raster with QGIS and draw a legend beside it."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsPalettedRasterRenderer, QgsRasterLayer
    from qgis.PyQt.QtCore import QRectF, QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    layer = QgsRasterLayer(raster, "classes")
    qml = os.path.splitext(raster)[0] + ".qml"
    layer.loadNamedStyle(qml)
    renderer = layer.renderer()
    classes = renderer.classes() if isinstance(renderer, QgsPalettedRasterRenderer) else []
    ext = layer.extent()
    map_w = 800
    map_h = max(1, int(map_w * ext.height() / ext.width()))
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setExtent(ext)
    settings.setOutputSize(QSize(map_w, map_h))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    map_img = job.renderedImage()

    legend_w = 260
    row = 24
    height = max(map_h, 50 + row * len(classes)) + 20
    img = QImage(map_w + legend_w + 30, height, QImage.Format_ARGB32)
    img.fill(QColor("white"))
    painter = QPainter(img)
    painter.drawImage(10, 10, map_img)
    font = QFont("DejaVu Sans", 10)
    painter.setFont(font)
    x0 = map_w + 20
    bold = QFont(font)
    bold.setBold(True)
    painter.setFont(bold)
    painter.drawText(QRectF(x0, 12, legend_w, row), Qt.AlignLeft | Qt.AlignVCenter, title)
    painter.setFont(font)
    for i, cls in enumerate(classes):
        y = 44 + i * row
        painter.fillRect(QRectF(x0, y + 4, 18, 16), cls.color)
        painter.setPen(QColor("black"))
        painter.drawRect(QRectF(x0, y + 4, 18, 16))
        painter.drawText(QRectF(x0 + 26, y, legend_w - 30, row), Qt.AlignLeft | Qt.AlignVCenter,
                         f"{int(cls.value) if float(cls.value).is_integer() else cls.value}  {cls.label}")
    painter.end()
    img.save(png)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raster", default=os.environ.get("DEMO_RASTER") or str(DEFAULT_RASTER))
    parser.add_argument("--model", default=os.environ.get("DEMO_MODEL") or str(DEFAULT_MODEL))
    parser.add_argument("--out", default=str(ROOT / "demo-out"))
    args = parser.parse_args()
    for what, path, flag in (("raster", args.raster, "RASTER"), ("model", args.model, "MODEL")):
        if not Path(path).exists():
            print(f"The demo {what} '{path}' is not here. The demo uses ../shared/testdata beside the checkout; "
                  f"without it, run: make demo {flag}=/path/to/your/{'image.tif' if what == 'raster' else 'model.emd'}"
                  " (RASTER a multiband GeoTIFF, MODEL an .emd, .dlpk or .onnx)", file=sys.stderr)
            return 2
    _setup_plugin_path()
    from qgis.core import QgsApplication, QgsProcessingFeedback

    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    import dltools

    plugin = dltools.classFactory(None)
    plugin.initProcessing()
    import processing

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS API
            print(info, flush=True)

        def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803 - QGIS API
            print(f"WARNING: {error}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tif = out / "landcover.tif"
    print(f"Classify Pixels Using Deep Learning: {args.raster}\n  model {args.model}", flush=True)
    processing.run("dltools:classifypixels", {
        "INPUT": args.raster, "MODEL": args.model, "ARGUMENTS": "batch_size 4", "OUTPUT": str(tif),
    }, feedback=Feedback())
    png = out / "landcover_preview.png"
    render_preview(str(tif), str(png), "Land cover (Esri model)")
    plugin.unload()
    print("\nDemo outputs:")
    print(f"  classified raster : {tif}")
    print(f"  QGIS style        : {tif.with_suffix('.qml')}")
    print(f"  preview with legend: {png}")
    print("Open the .tif in QGIS: the style (class names and colours) is applied automatically.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
