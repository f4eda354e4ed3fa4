#include <prometheus/exposer.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <iostream>
int main() {
  auto reg = std::make_shared<prometheus::Registry>();
  auto &f = prometheus::BuildCounter().Name("x_total").Help("x").Register(*reg);
  f.Add({}).Increment(3);
  prometheus::Exposer ex{"127.0.0.1:0"};
  ex.RegisterCollectable(reg);
  std::cout << prometheus::TextSerializer().Serialize(reg->Collect()) << ex.GetListeningPorts().size() << "\n";
}
