// Fragment helpers shared by the colour passes.

uniform sampler2D base_texture;
uniform sampler2D sphere_texture;

const vec3 LIGHT_TOWARDS = vec3(0.0, 0.0, 1.0);  // light travels along -z
const float MIN_ALPHA = 0.5 / 255.0;  // below this a fragment writes neither colour nor depth

vec4 textured(Material m, vec2 uv) {
    return m.maps.x > 0.5 ? texture(base_texture, uv) * m.texture_mul + m.texture_add : vec4(1.0);
}

// A surface's colour as MMD computes it before shading (shading.mmd_colour, then the maps): the material colour (diffuse under
// MMD's light plus ambient, clamped) times the texture, then the sphere map (multiply or add),
// looked up by the view-space normal.
vec4 surface_colour(Material m, vec2 uv, vec3 n) {
    vec4 base = vec4(clamp(m.diffuse.rgb * MMD_LIGHT + m.ambient.rgb, 0.0, 1.0), m.diffuse.a) * textured(m, uv);
    if (m.maps.y > 0.5) {
        vec4 sphere = texture(sphere_texture, n.xy * vec2(0.5, -0.5) + 0.5) * m.sphere_mul + m.sphere_add;
        base.rgb = m.maps.y > 1.5 ? base.rgb + sphere.rgb : base.rgb * sphere.rgb;
    }
    return base;
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
