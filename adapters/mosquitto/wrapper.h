/* The headers the plugin's bindings are generated from (see bindgen.sh). */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
