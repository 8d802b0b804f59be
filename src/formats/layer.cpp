// placeholder so the formats layer library is never empty; removed when the layer has code.
