// ServingEngine: the part of engine::Engine the server calls, behind an interface so the HTTP and OpenAI layers
// can be tested with a fake engine. wrap_engine() adapts the real one (engine_adapter.cpp).
#pragma once

#include <memory>
#include <string>

#include "engine/engine.h"

namespace osprey::server {

class ServingEngine {
  public:
    virtual ~ServingEngine() = default;
    // Throws osprey::Error like Engine::submit (InvalidArgument, ContextOverflow, OutOfMemory = queue full).
    virtual void submit(engine::GenerationRequest request, engine::OutputCallback on_output) = 0;
    virtual void abort(const std::string& request_id) = 0;
    virtual engine::EngineStats stats() const = 0;
    virtual int max_model_len() const = 0;
    virtual int max_n() const = 0;
    virtual bool healthy() const = 0;
    virtual void drain(double timeout_s) = 0;
};

// `engine` must outlive the wrapper.
std::unique_ptr<ServingEngine> wrap_engine(engine::Engine& engine);

}  // namespace osprey::server
