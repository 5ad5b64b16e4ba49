// Fragment helpers shared by the colour passes.

uniform sampler2D base_texture;

const vec3 LIGHT_TOWARDS = vec3(0.0, 0.0, 1.0);  // light travels along -z
const float MIN_ALPHA = 0.5 / 255.0;  // below this a fragment writes neither colour nor depth

vec4 textured(Material m, vec2 uv) {
    return m.maps.x > 0.5 ? texture(base_texture, uv) * m.texture_mul + m.texture_add : vec4(1.0);
}

vec3 facing_normal(vec3 normal) {
    vec3 n = normalize(normal);
    return gl_FrontFacing ? n : -n;
}

float specular_term(Material m, vec3 n) {
    if (m.specular.w <= 0.0) return 0.0;
    vec3 reflected = reflect(-LIGHT_TOWARDS, n);
    return pow(max(reflected.z, 0.0), m.specular.w);
}
