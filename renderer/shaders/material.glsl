// Effective material parameters (after material morphs), one entry per material.

struct Material {
    vec4 diffuse;       // rgba
    vec4 specular;      // rgb, shininess
    vec4 ambient;       // rgb, edge size
    vec4 edge_color;
    vec4 texture_mul;   // tinted texture = texture * mul + add (material morphs)
    vec4 texture_add;
    vec4 sphere_mul;
    vec4 sphere_add;
    vec4 toon_mul;
    vec4 toon_add;
    vec4 maps;          // has texture, sphere mode (0 none, 1 multiply, 2 add), has toon, unused
};

layout(std430, binding = 1) readonly buffer Materials { Material materials[]; };

uniform int material;
