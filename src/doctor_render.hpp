// doctor, rendering: the report as one JSON object or as text.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "doctor_assess.hpp"

namespace ctct {

nlohmann::json doctor_json(const DoctorInput &in, const Assessment &a);
std::string doctor_text(const DoctorInput &in, const Assessment &a);

} // namespace ctct
