// The real engine behind ServingEngine (kept in its own file so tests with a fake never link Engine).
#include "server/serving_engine.h"

namespace osprey::server {

namespace {

class EngineAdapter final : public ServingEngine {
  public:
    explicit EngineAdapter(engine::Engine& engine) : engine_(engine) {}
    void submit(engine::GenerationRequest request, engine::OutputCallback on_output) override {
        engine_.submit(std::move(request), std::move(on_output));
    }
    void abort(const std::string& request_id) override { engine_.abort(request_id); }
    engine::EngineStats stats() const override { return engine_.stats(); }
    int max_model_len() const override { return engine_.max_model_len(); }
    int max_n() const override { return engine_.config().max_n; }
    bool healthy() const override { return engine_.healthy(); }
    void drain(double timeout_s) override { engine_.drain(timeout_s); }

  private:
    engine::Engine& engine_;
};

}  // namespace

std::unique_ptr<ServingEngine> wrap_engine(engine::Engine& engine) { return std::make_unique<EngineAdapter>(engine); }

}  // namespace osprey::server
