// placeholder so the engine layer library is never empty; removed when the layer has code.
