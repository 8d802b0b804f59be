// placeholder so the model layer library is never empty; removed when the layer has code.
