# SPDX-License-Identifier: GPL-2.0-or-later
"""Class rasters that explain themselves: colour table, raster attribute table and a QGIS .qml style.

The colour table and RAT live in the GeoTIFF (and its .aux.xml), so any GIS
sees class names and colours; the ``.qml`` next to the file is QGIS's default
style for it (QGIS applies ``<name>.qml`` when it loads ``<name>.tif``), a
paletted renderer with the class names as labels.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

from osgeo import gdal

from ..model.definition import ClassInfo, palette

BACKGROUND_COLOR = (0, 0, 0)


def class_entries(classes: list[ClassInfo], values: list[int]) -> list[ClassInfo]:
    """One entry per value the raster can hold: the model's classes, plus 0 as background if it is not one."""
    by_value = {c.value: c for c in classes}
    extra_colours = palette(len(values))
    out = []
    for i, v in enumerate(sorted(set(values) | set(by_value))):
        if v in by_value:
            c = by_value[v]
            out.append(ClassInfo(v, c.name, c.color or extra_colours[i % len(extra_colours)]))
        else:
            out.append(ClassInfo(v, "Background" if v == 0 else f"Class {v}",
                                 BACKGROUND_COLOR if v == 0 else extra_colours[i % len(extra_colours)]))
    return out


def qml_text(entries: list[ClassInfo], band: int = 1) -> str:
    """A QGIS paletted-renderer style listing every class with its name and colour."""
    rows = "\n".join(
        f'        <paletteEntry value="{c.value}" color="#{c.color[0]:02x}{c.color[1]:02x}{c.color[2]:02x}" '
        f'alpha="255" label={quoteattr(c.name)}/>' for c in entries if c.color is not None)
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="paletted" band="{band}" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin><limits>None</limits><extent>WholeRaster</extent><statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower><cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor></minMaxOrigin>
      <colorPalette>
{rows}
      </colorPalette>
      <colorramp type="randomcolors" name="[source]"/>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" colorizeRed="255" colorizeGreen="128"
      colorizeBlue="128" colorizeStrength="100"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def style_class_raster(path: str, classes: list[ClassInfo], values: list[int]) -> Path:
    """Add the colour table (8/16-bit rasters) and the RAT to ``path``; write ``<path stem>.qml``. Returns the .qml."""
    entries = class_entries(classes, values)
    ds = gdal.Open(str(path), gdal.GA_Update)
    try:
        band = ds.GetRasterBand(1)
        if band.DataType in (gdal.GDT_Byte, gdal.GDT_UInt16) and entries:
            ct = gdal.ColorTable()
            for c in entries:
                if c.value >= 0 and c.color is not None:
                    ct.SetColorEntry(int(c.value), (c.color[0], c.color[1], c.color[2], 255))
            band.SetColorTable(ct)
            band.SetColorInterpretation(gdal.GCI_PaletteIndex)
        rat = gdal.RasterAttributeTable()
        rat.CreateColumn("Value", gdal.GFT_Integer, gdal.GFU_MinMax)
        rat.CreateColumn("Class", gdal.GFT_String, gdal.GFU_Name)
        rat.CreateColumn("Red", gdal.GFT_Integer, gdal.GFU_Red)
        rat.CreateColumn("Green", gdal.GFT_Integer, gdal.GFU_Green)
        rat.CreateColumn("Blue", gdal.GFT_Integer, gdal.GFU_Blue)
        rat.SetRowCount(len(entries))
        for i, c in enumerate(entries):
            rgb = c.color or (0, 0, 0)
            rat.SetValueAsInt(i, 0, int(c.value))
            rat.SetValueAsString(i, 1, c.name)
            for j in range(3):
                rat.SetValueAsInt(i, 2 + j, int(rgb[j]))
        band.SetDefaultRAT(rat)
        ds.FlushCache()
    finally:
        ds = None
    qml = Path(path).with_suffix(".qml")
    qml.write_text(qml_text(entries), encoding="utf-8")
    return qml


def categorized_qml(entries: list[ClassInfo], field: str, with_outline_only: bool = False) -> str:
    """A QGIS categorized-renderer style for polygons: one category per class name, in the class's colour
    (a translucent fill and a solid outline, so the image stays visible under the objects)."""
    cats, symbols = [], []
    for i, c in enumerate(entries):
        r, g, b = c.color or palette(len(entries))[i]
        cats.append(f'      <category render="true" symbol="{i}" value={quoteattr(c.name)} label={quoteattr(c.name)}/>')
        fill_alpha = 0 if with_outline_only else 60
        symbols.append(f"""      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" pass="0" locked="0">
          <Option type="Map">
            <Option type="QString" name="color" value="{r},{g},{b},{fill_alpha}"/>
            <Option type="QString" name="outline_color" value="{r},{g},{b},255"/>
            <Option type="QString" name="outline_style" value="solid"/>
            <Option type="QString" name="outline_width" value="0.6"/>
            <Option type="QString" name="outline_width_unit" value="MM"/>
            <Option type="QString" name="style" value="solid"/>
            <Option type="QString" name="joinstyle" value="miter"/>
          </Option>
        </layer>
      </symbol>""")
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="Symbology">
  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" forceraster="0">
    <categories>
{chr(10).join(cats)}
    </categories>
    <symbols>
{chr(10).join(symbols)}
    </symbols>
  </renderer-v2>
</qgis>
"""
