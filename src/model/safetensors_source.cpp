#include "formats/safetensors_model.h"
#include "model/model.h"

namespace osprey::model {

WeightSource safetensors_weight_source(const formats::SafetensorsModel& weights) {
    WeightSource s;
    s.naming = WeightNaming::HuggingFace;
    s.description = weights.dir();
    s.tensor_names = weights.tensor_names();
    s.find = [&weights](const std::string& name) -> std::optional<Tensor> {
        const formats::SafetensorsTensorInfo* t = weights.find_tensor(name);
        if (!t) t = weights.find_tensor("language_model." + name);  // Gemma3ForConditionalGeneration layout
        if (!t) return std::nullopt;
        return t->view();
    };
    return s;
}

}  // namespace osprey::model
