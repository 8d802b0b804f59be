// placeholder so the tokenizer layer library is never empty; removed when the layer has code.
