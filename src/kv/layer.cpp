// placeholder so the kv layer library is never empty; removed when the layer has code.
