// Skinned mesh for the colour passes; with EDGE defined, the inflated hull of the edge pass.

uniform mat4 camera;
uniform float edge_unit;  // model units per edge-size unit (one pixel at this framing)

in vec2 in_uv;
in vec2 in_uv_morph;
in float in_edge;

out vec3 v_normal;
out vec2 v_uv;

void main() {
    vec3 position;
    vec3 normal;
    skin(position, normal);
#ifdef EDGE
    position += normal * (in_edge * materials[material].ambient.w * edge_unit);
#endif
    v_normal = normal;
    v_uv = in_uv + in_uv_morph;
    gl_Position = camera * vec4(position, 1.0);
}
