#include "core/error.h"
#include "model/model.h"

namespace osprey::model {

ModelConfig config_from_hf_folder(const std::string& dir) {
    raise(ErrorCode::Unsupported, "{}: Hugging Face folders are not loadable yet", dir);
}

}  // namespace osprey::model
